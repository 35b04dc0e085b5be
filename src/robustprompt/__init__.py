"""robustprompt: robust prompt tuning for CLIP-style vision-language models.

Python API (the CLI calls the same functions):
    load_backbone(model, pretrained)            frozen CLIP with per-layer prompt hooks
    create_method(name, backbone, classnames, template, config)
    list_methods(), list_datasets(), prepare_dataset(name, root, shots=, seed=, split=)
    build_run_config(preset, overrides, values) -> RunConfig
    train(cfg, out)                             one engine for every method; writes a run directory
    evaluate_run(run, split=..., dataset=...)   clean accuracy records into results.json
    load_run(run) -> (cfg, method)
    predict(run, images, classes=None, top_k=5) -> [[(classname, prob), ...], ...]
    build_report(paths, out) -> ReportResult   tables, plots and report.html over run directories
"""

__version__ = "0.1.0"

_API = {
    "load_backbone": "backbone",
    "create_method": "methods.registry",
    "list_methods": "methods.registry",
    "register_method": "methods.registry",
    "list_datasets": "data",
    "prepare_dataset": "data",
    "build_run_config": "config",
    "RunConfig": "config",
    "train": "engine.train",
    "evaluate_run": "engine.runs",
    "load_run": "engine.runs",
    "predict": "inference",
    "Predictor": "inference",
    "build_report": "report",
}


def __getattr__(name):  # lazy: `import robustprompt` stays cheap for `robustprompt --help`
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'robustprompt' has no attribute {name!r}")


__all__ = list(_API)
