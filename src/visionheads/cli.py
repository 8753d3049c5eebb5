"""`visionheads demo | fit | compare | evaluate | predict | explain | list`."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

from visionheads.errors import ConfigError, VisionHeadsError

DEMO_TASK = {"backbone": "simple_cnn", "in_chans": 1, "image_size": 24}
STRATEGIES_COMPARED = ("scratch", "features", "freeze", "finetune")
DEMO_FIT = {"epochs": 10, "batch_size": 64, "lr": 0.003}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `visionheads` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except VisionHeadsError as error:
        print(f"visionheads: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("visionheads: interrupted", file=sys.stderr)
        return 130


def _one_line(error: VisionHeadsError) -> str:
    # An error raised in a DataLoader worker comes back with the worker's traceback in its message; its last line
    # is the message itself ("visionheads.errors.DataError: ...").
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def echo(text: str) -> None:
    """Print results to stdout, flushed (progress goes to stderr)."""
    print(text, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionheads", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="train a small classifier on the built-in digits (no network)")
    demo.add_argument("--epochs", type=int, default=DEMO_FIT["epochs"])
    demo.add_argument("--project", default="runs", help="parent folder of the run folder")
    demo.set_defaults(run=_demo)

    fit = sub.add_parser(
        "fit",
        help="train from a recipe YAML or a task name, with key=value overrides",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("-h", "--help", action=_FitHelp, help="show this help with every key fit takes, and exit")
    fit.add_argument("recipe", help="a recipe .yaml, or a task name (then give train=DATA)")
    fit.add_argument("overrides", nargs="*", help="key=value, e.g. epochs=3 fit.lr=0.01 backbone=resnet18")
    fit.set_defaults(run=_fit)

    compare = sub.add_parser(
        "compare", help="train one recipe once per transfer strategy and print them side by side (and plot)"
    )
    compare.add_argument("recipe", help="a recipe .yaml")
    compare.add_argument(
        "overrides", nargs="*", help="strategy=scratch,features,freeze,finetune (the default) and key=value overrides"
    )
    compare.set_defaults(run=_compare_strategies)

    evaluate = sub.add_parser("evaluate", help="metrics of a saved task on data")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("data", help="built-in name (digits:test), coco:ANNOTATIONS.json[:cat,dog][[:N]] or a path")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--images", help="the images folder of coco:... data (default: beside the JSON)")
    evaluate.add_argument("--results", help="detection: the COCO results JSON to write (default: detections.json)")
    evaluate.add_argument("--tta", action="store_true", help="classification, segmentation: average over test-time "
                          "views (mirror; segmentation also 0.75x and 1.25x)")  # fmt: skip
    evaluate.set_defaults(run=_evaluate)

    predict = sub.add_parser("predict", help="predictions of a saved task for image files")
    predict.add_argument("checkpoint")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--out", default="predictions", help="folder for PNGs (masks, reconstructions, detections)")
    predict.set_defaults(run=_predict)

    explain = sub.add_parser("explain", help="heatmaps of what a saved task looked at (Grad-CAM and kin), as PNGs")
    explain.add_argument("checkpoint")
    explain.add_argument("images", nargs="+")
    explain.add_argument("--method", default="gradcam", help="gradcam (default), gradcam++, xgradcam, eigencam, ...")
    explain.add_argument("--out", default="explanations", help="folder for the overlays")
    explain.add_argument(
        "--class", dest="target", help="class index or name to explain (default: the predicted class; required for "
        "segmentation; regression: an output dimension)"
    )  # fmt: skip
    explain.add_argument("--stage", type=int, default=-1, help="the body's stage to explain at (default: the deepest)")
    explain.set_defaults(run=_explain)

    export = sub.add_parser("export", help="write a saved task as an ONNX, TorchScript or ExportedProgram file")
    export.add_argument("checkpoint")
    export.add_argument("--format", default="onnx", choices=["onnx", "torchscript", "exported-program"])
    export.add_argument("--out", help="the file to write (default: beside the checkpoint, .onnx/.torchscript/.pt2)")
    export.add_argument("--part", help="autoencoder: reconstruct (default), encode or decode")
    export.add_argument("--static", action="store_true", help="fix the batch and image size to the example's")
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument("--half", action="store_true", help="float16 weights, for a CUDA device (needs one)")
    export.set_defaults(run=_export)

    listing = sub.add_parser("list", help="list backbones, tasks, heads or built-in datasets")
    listing.add_argument("what", choices=["backbones", "tasks", "heads", "datasets"])
    listing.add_argument(
        "--details",
        action="store_true",
        help="backbones: parameters, GFLOPs, stages, ImageNet weights (builds each: ~1 min on 2 CPU cores)",
    )
    listing.set_defaults(run=_list)
    return parser


class _FitHelp(argparse.Action):
    """`fit --help`: the usage, then every key=value a recipe takes (it imports the tasks to list their options)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from visionheads.recipes import describe_keys

        parser.epilog = describe_keys()
        parser.print_help()
        parser.exit()


def _demo(args: argparse.Namespace) -> int:
    import visionheads as vh
    from visionheads.recipes import format_metrics

    start = time.perf_counter()
    echo("visionheads demo: a small CNN learns scikit-learn's handwritten digits (built in, no download)")
    task = vh.Task("classification", **DEMO_TASK)
    history = task.fit("digits", "digits:val", **{**DEMO_FIT, "epochs": args.epochs}, project=args.project, name="demo")
    evaluation = task.evaluation("digits:test")
    plots = task.plot(history.run_dir, data=evaluation)
    checkpoint = task.save(history.run_dir / "model.pt")
    echo(format_metrics(evaluation.metrics, title="test metrics on digits:test (360 images)"))
    echo(f"checkpoint: {checkpoint}")
    echo(f"plots:      {', '.join(str(p) for p in plots)}")
    echo(f"try:        visionheads evaluate {checkpoint} digits:test")
    echo(f"done in {time.perf_counter() - start:.0f}s")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from visionheads.recipes import parse_overrides, run_recipe

    overrides = parse_overrides(args.overrides)
    if args.recipe.endswith((".yaml", ".yml")):
        run_recipe(args.recipe, overrides)
        return 0
    import tempfile

    import yaml

    # A task name plus overrides is a recipe written on the command line.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(yaml.safe_dump({"task": {"name": args.recipe}}))
        run_recipe(path, overrides)
    return 0


def _compare_strategies(args: argparse.Namespace) -> int:
    from visionheads.comparing import compare_strategies, format_comparison
    from visionheads.recipes import parse_overrides
    from visionheads.tasks import task_class
    from visionheads.viz.curves import plot_comparison

    overrides = parse_overrides(args.overrides)
    chosen = overrides.pop("strategy", None) or overrides.pop("fit.strategy", None) or ",".join(STRATEGIES_COMPARED)
    runs, measured_on = compare_strategies(args.recipe, [s.strip() for s in str(chosen).split(",")], overrides)
    monitor = task_class(_recipe_task(args.recipe)).monitor[0]
    echo(format_comparison(runs, monitor.removeprefix("val_"), measured_on))
    if runs[0].run_dir is not None:
        curves = {run.strategy: run.rows for run in runs}
        figure = plot_comparison(curves, monitor, runs[0].run_dir.parent / "compare.png")
        echo(f"validation curves: {figure}")
    return 0


def _recipe_task(recipe: str) -> str:
    from visionheads.recipes import load_recipe

    return str(load_recipe(recipe)["task"]["name"])


def _evaluate(args: argparse.Namespace) -> int:
    import visionheads as vh
    from visionheads.recipes import format_metrics

    task = vh.Task.load(args.checkpoint)
    data = _with_images(args.data, args.images) if args.images else args.data
    options: dict[str, Any] = {"batch_size": args.batch_size, "tta": args.tta}
    if task.results_format is not None:
        options["results"] = args.results or "detections.json"
    echo(format_metrics(task.evaluate(data, **options), title=f"metrics on {args.data}"))
    if task.results_format is not None:
        echo(f"results ({task.results_format}): {options['results']}")
    return 0


def _with_images(data: str, images: str) -> dict[str, Any]:
    """`coco:ANNOTATIONS.json[:cat,dog][[:N]]` and an images folder as the mapping form of COCO data."""
    from visionheads.data.catalog import parse_coco_spec

    return parse_coco_spec(data) | {"images": images}


def _predict(args: argparse.Namespace) -> int:
    from visionheads.data.masks import save_mask

    task = _predictor(args.checkpoint)
    if task.name == "siamese":
        return _compare(task, args.images)
    results = task.predict(args.images)
    out = Path(args.out)
    stems = _output_stems(args.images)
    if task.name == "detection":
        return _write_detections(task.in_chans, args.images, stems, results, out)
    failed = 0
    for image, stem, result in zip(args.images, stems, results, strict=False):
        if isinstance(result, Exception):  # an unreadable file: said, the others written; the exit status says 1
            shown, failed = f"error: {result}", failed + 1
        elif getattr(result, "ndim", 0) == 2:  # a mask: too big to print, written as a palette PNG of class indices
            shown = f"mask saved to {save_mask(result, out / f'{stem}_mask.png')}"
        elif getattr(result, "ndim", 0) == 3:  # an image (a reconstruction): written as a PNG
            shown = f"image saved to {_save_image(result, out / f'{stem}_{task.name}.png')}"
        else:
            shown = {k: v for k, v in result.items() if k != "probs"} if isinstance(result, dict) else result
        echo(f"{image}: {shown}")
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    import visionheads as vh
    from visionheads.deploy.metadata import FORMATS

    task = vh.Task.load(args.checkpoint)
    out = args.out or str(Path(args.checkpoint).with_suffix("")) + (f"_{args.part}" if args.part else "") + FORMATS[
        args.format]  # fmt: skip
    path = task.export(out, format=args.format, part=args.part, dynamic=not args.static, opset=args.opset,
                       half=args.half)  # fmt: skip
    echo(f"{task.name} ({task.config.head}) exported as {args.format}: {path}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    import visionheads as vh
    from visionheads.runtime.inference import image_arrays
    from visionheads.viz.inside import save_overlay

    task = vh.Task.load(args.checkpoint)
    target = int(args.target) if args.target is not None and args.target.isdigit() else args.target
    heatmaps = task.explain(args.images, method=args.method, target=target, stage=args.stage)
    out = Path(args.out)
    for image, stem, array, heatmap in zip(
        args.images, _output_stems(args.images), image_arrays(args.images, task.config.in_chans), heatmaps, strict=True
    ):
        echo(f"{image}: {save_overlay(array, heatmap, out / f'{stem}_{args.method}.png')}")
    return 0


def _output_stems(images: list[str]) -> list[str]:
    """One distinct output name per image: its stem, or `<folder>_<stem>` (then a `_2`, `_3` suffix) on a clash.

    `a/x.png b/x.png` gives `a_x`, `b_x`; names that do not clash stay as they are.
    """
    paths = [Path(image) for image in images]
    clashes = Counter(path.stem for path in paths)
    wanted = [f"{path.parent.name}_{path.stem}" if clashes[path.stem] > 1 and path.parent.name else path.stem
              for path in paths]  # fmt: skip
    taken: set[str] = set()
    stems = []
    for name in wanted:
        stem, count = name, 1
        while stem in taken or (stem != name and stem in wanted):
            count += 1
            stem = f"{name}_{count}"
        taken.add(stem)
        stems.append(stem)
    return stems


class _Predictor(NamedTuple):
    """What predict uses of a checkpoint or an exported file."""

    name: str
    predict: Any
    verify: Any
    in_chans: int


def _predictor(path: str) -> _Predictor:
    # An exported file (.onnx, .torchscript, .pt2) runs on the light runtime; anything else is a checkpoint.
    from visionheads.deploy.metadata import FORMATS

    if path.endswith(tuple(FORMATS.values())):
        from visionheads.deploy import load_exported

        model = load_exported(path)
        return _Predictor(model.task, model.predict, model.verify, model.metadata.in_chans)
    import visionheads as vh

    task = vh.Task.load(path)
    return _Predictor(task.name, task.predict, getattr(task, "verify", None), task.config.in_chans)


def _compare(task: _Predictor, images: list[str]) -> int:
    if len(images) != 2:
        print("visionheads: error: a siamese task compares two images: predict CKPT a.png b.png", file=sys.stderr)
        return 2
    (result,) = task.verify([(images[0], images[1])])
    verdict = "same" if result["same"] else "different"
    echo(f"{images[0]} vs {images[1]}: similarity {result['score']:.4f} -> {verdict}")
    return 0


def _write_detections(in_chans: int, images: list[str], stems: list[str], results: list[dict], out: Path) -> int:
    from visionheads.metrics.coco import results_list
    from visionheads.runtime.inference import image_arrays
    from visionheads.tasks.detection import write_coco_results
    from visionheads.viz.detection import draw_detections

    for image_id, (image, stem, result) in enumerate(zip(images, stems, results, strict=True), start=1):
        if isinstance(result, Exception):  # an unreadable file: said, and left out of the results file
            echo(f"{image} (image_id {image_id}): error: {result}")
            continue
        shown = ", ".join(f"{n} {s:.2f}" for n, s in zip(result["labels"], result["scores"], strict=True) if s >= 0.5)
        array = image_arrays([image], in_chans)[0]
        picture = draw_detections(array, result, out / f"{stem}_detections.png")
        echo(f"{image} (image_id {image_id}): {len(result['boxes'])} detection(s); {shown or 'none'} >= 0.5; {picture}")
    read = [(image_id, result) for image_id, result in enumerate(results, start=1) if not isinstance(result, Exception)]
    path = write_coco_results(results_list([i for i, _ in read], [r for _, r in read]), out / "detections.json")
    echo(f"detections (COCO results JSON, image ids in the order given): {path}")
    return 1 if len(read) < len(results) else 0


def _save_image(array: Any, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    # HxWxC uint8; PIL takes grey images as HxW
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path


def _list(args: argparse.Namespace) -> int:
    if args.details:
        return _backbone_details(args.what)
    # The static tables, not the registries: filling those imports torch, timm and Lightning (~10 s).
    from visionheads import _names

    if args.what == "backbones":
        echo("\n".join([*_names.BACKBONES, "timm/<any timm model name>"]))
    elif args.what == "tasks":
        echo("\n".join(_names.TASK_HEADS))
    elif args.what == "datasets":
        echo("\n".join(_names.DATASETS))
    else:
        for name, heads in _names.TASK_HEADS.items():
            echo(f"{name}: {', '.join(heads)}")
    return 0


def _backbone_details(what: str) -> int:
    if what != "backbones":
        raise ConfigError(f"--details describes backbones only, not {what}: visionheads list backbones --details")
    from visionheads.backbones import describe_backbones, format_zoo

    start = time.perf_counter()
    rows = describe_backbones(progress=lambda text: print(f"building {text}", file=sys.stderr, flush=True))
    echo(format_zoo(rows))
    echo("any timm model also works as timm/<name> (not listed)")
    print(f"{len(rows)} backbones described in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
