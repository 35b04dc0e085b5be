"""`robustprompt list`: what is registered."""

from __future__ import annotations

from ._common import formatter

KINDS = ["methods", "models", "datasets", "presets"]


def register(sub) -> None:
    p = sub.add_parser("list", help="list methods, models, datasets or presets",
                       description="List what robustprompt knows.", formatter_class=formatter)
    p.add_argument("kind", nargs="?", choices=KINDS + ["all"], default="all")
    p.add_argument("--pattern", default="*", help="glob filter, e.g. '*ViT-B*'")
    p.set_defaults(func=run)


def run(args) -> int:
    import fnmatch

    kinds = KINDS if args.kind == "all" else [args.kind]
    for kind in kinds:
        rows = _rows(kind)
        rows = [(n, d) for n, d in rows if fnmatch.fnmatch(n, args.pattern)]
        if len(kinds) > 1:
            print(f"{kind}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, desc in rows:
            print(f"  {name.ljust(width)}  {desc}".rstrip() if len(kinds) > 1 else f"{name.ljust(width)}  {desc}".rstrip())
    return 0


def _rows(kind: str) -> list[tuple[str, str]]:
    if kind == "methods":
        from ..methods.registry import list_methods, method_entry

        return [(n, method_entry(n).description) for n in list_methods()]
    if kind == "models":
        from ..backbone.loading import image_tower_of, list_models, project_models, shipped_weights
        from ..methods.registry import TOWER_NAMES, list_methods, methods_for_tower

        own = set(project_models())
        every = len(list_methods())
        supports = {t: ("all methods" if len(methods_for_tower(t)) == every else ", ".join(methods_for_tower(t)))
                    for t in TOWER_NAMES}

        def describe(n: str) -> str:
            origin = ("project model" + (", weights shipped" if shipped_weights(n) else ", random init only")
                      if n in own else "open_clip")
            tower = image_tower_of(n)
            if tower is None:
                return f"{origin}; not supported (its towers are not open_clip's CLIP ViT/ResNet with EOT pooling)"
            return f"{origin}; {TOWER_NAMES[tower]} image tower: {supports[tower]}"

        return [(n, describe(n)) for n in list_models()]
    if kind == "datasets":
        from ..data.registry import dataset_entry, list_datasets

        return [(n, ("" if dataset_entry(n).needs_root else "[offline] ") + dataset_entry(n).description)
                for n in list_datasets()]
    from ..config import list_presets

    return [(n, "") for n in list_presets()]
