"""`robustprompt world`: fetch and inspect the emoji world (picture sources, concepts)."""

from __future__ import annotations

import argparse

HELP = "fetch or inspect the emoji world: picture sources from npm, concepts, licences"

DESCRIPTION = """\
The emoji world is the offline data behind robustprompt-small and the emoji testbed suite: 13
picture styles from 9 npm packages (Noto, Twemoji, EmojiOne, Fluent, OpenMoji, Firefox OS emoji),
each pinned by version and sha256, plus the vocabulary of about 1,300 concepts joined across them.

  fetch     npm-pack every source, check its hash, render its pictures once (64 px RGBA) into the
            world folder; skips what is already there (scripts/setup runs it; about 3 minutes)
  sources   each style: package, licence, role (pretrain / downstream / holdout), pictures
  concepts  the vocabulary: name, synonyms, description (--pattern filters names)
  suite     the emoji testbed suite as a Markdown table: classes, images and distinct source
            pictures per split (builds every dataset: about a minute)

The world folder is --world, else $ROBUSTPROMPT_WORLD, else ~/.cache/robustprompt/world."""


def register(sub) -> None:
    p = sub.add_parser("world", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["fetch", "sources", "concepts", "suite"])
    p.add_argument("--world", metavar="DIR", help="the world folder (default $ROBUSTPROMPT_WORLD, else ~/.cache/robustprompt/world)")
    p.add_argument("--force", action="store_true", help="fetch: re-pack and re-render even what is there")
    p.add_argument("--pattern", default="*", help="concepts: glob filter on names, e.g. '*cat*'")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..world import sources

    if args.action == "fetch":
        where = sources.fetch(args.world, force=args.force)
        print(f"world: {len(sources.SOURCES)} styles ready in {where}")
        return 0
    if args.action == "sources":
        for s in sources.SOURCES:
            path = sources.pictures_path(s.style, args.world)
            n = "not fetched"
            if path.is_file():
                n = f"{len(sources.load_pictures(s.style, args.world)[0])} pictures"
            print(f"{s.style:18} {s.role:10} {s.family:18} {s.licence:13} {s.spec:40} {n}")
        return 0
    if args.action == "suite":
        return _suite_table(args.world)
    import fnmatch

    from ..world.concepts import load_concepts

    for c in load_concepts(args.world):
        if fnmatch.fnmatch(c.name, args.pattern):
            print(f"{c.name:32} {c.subgroup:24} {c.description}")
    return 0


def _suite_table(root) -> int:
    from ..data import emoji_suite as E

    root = str(root) if root else None
    print("| dataset | stands in for | classes | train / val / test images | distinct pictures train / test | test styles |")
    print("|---|---|---|---|---|---|")
    total = {"train": 0, "test": 0}
    rows = [(s.name, s.role, lambda n=s.name: E.build_suite_dataset(n, root), "fluent-3d, fluent-color")
            for s in E.SUITE]
    rows.append(("emoji-world", E.WORLD.role, lambda: E.build_world("", root), "fluent-3d, fluent-color"))
    shift_styles = {"outline": "openmoji-black", "mono": "fluent-mono", "grey": "fluent-3d, fluent-color (greyscale)",
                    "clutter": "fluent-3d, fluent-color (+ a second object)"}
    for name, what in E.SHIFTS.items():
        v = name[len("emoji-world-"):]
        rows.append((name, what, lambda v=v: E.build_world(v, root), shift_styles[v]))
    rows.append((E.PROBE, "a style no other dataset or pretraining uses", lambda: E.build_probe(root), "fxemoji"))
    for name, role, build, styles in rows:
        ds = build()
        pics = E.source_pictures(ds, root)
        if name in {s.name for s in E.SUITE}:
            total["train"] += pics["train"]
            total["test"] += pics["test"]
        print(f"| {name} | {role} | {ds.num_classes} | {len(ds.train)} / {len(ds.val)} / {len(ds.test)} "
              f"| {pics['train']} / {pics['test']} | {styles} |")
    print(f"\nthe {len(E.SUITE)} suite datasets hold {total['train']} distinct training pictures and "
          f"{total['test']} distinct test pictures in all")
    return 0

