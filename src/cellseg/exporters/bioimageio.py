"""A checkpoint as a BioImage Model Zoo package (``format=bioimageio``): the zip that Fiji (deepImageJ),
ilastik, QuPath, napari and bioimageio.core open.

The package holds rdf.yaml (spec format 0.5), TorchScript and ONNX weights of
:class:`~cellseg.exporters.wrappers.PackagedNetwork` (source planes in, probabilities out), a test input
with the output cellseg itself computes for it, a cover and a README. The checkpoint's preprocessing in
the spec's terms:

- normalisation ``percentile``/``minmax``: ``scale_range`` per sample and channel (then ``clip`` when
  the checkpoint clips); ``meanstd``: ``fixed_zero_mean_unit_variance`` with the training set's values;
- the channel strategy (a selection, a merge, a blank, a random spec's validation choice) has no spec
  equivalent: it runs inside the network as a fixed 1x1 convolution, so the package reads the source
  planes a user has, by their names;
- softmax runs inside the network; regression maps (distance, flows) follow the probabilities as they
  are. Decoding them into instances is cellseg's, not the spec's: the README says so and the
  decoding settings travel in ``config.cellseg``.

bioimageio.core's model test (the spec's preprocessing, then each weight format, against cellseg's own
output for the test input) must pass before anything is written.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg.data.pipeline.normalize import Normalization
from cellseg.errors import ConfigError
from cellseg.exporters.common import ExportError
from cellseg.exporters.export import build_metadata, export_checked
from cellseg.exporters.package_files import (
    AxisSizes,
    cellseg_prediction,
    crop_sample,
    read_sample,
    readme_text,
    synthetic_sample,
    write_cover,
)
from cellseg.exporters.settings import ExportSettings, PackageOptions
from cellseg.exporters.wrappers import AlwaysPad, PackagedNetwork
from cellseg.inference.checkpoint import LoadedModel
from cellseg.inference.inputs import InputPipeline
from cellseg.models.padding import PadToMultiple, input_multiple
from cellseg.utils.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

INPUT_ID, OUTPUT_ID = "image", "prediction"
#: U-Net: Ronneberger, Fischer and Brox, MICCAI 2015 (a DOI: citing it needs no network check).
UNET_CITATION = {
    "text": "Ronneberger et al. U-Net: Convolutional Networks for Biomedical Image Segmentation",
    "doi": "10.1007/978-3-319-24574-4_28",
}


def preprocessing(normalization: Normalization, used: Sequence[int]) -> tuple[list[Any], list[str]]:
    """The spec's preprocessing steps for the source planes ``used``, and notes on what differs."""
    from bioimageio.spec.model import v0_5 as spec

    steps: list[Any] = [spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))]
    notes: list[str] = []
    plane_axes = [spec.AxisId("y"), spec.AxisId("x")]
    if normalization.method == "meanstd":
        if normalization.mean is None or normalization.std is None:
            raise ConfigError("normalization.method=meanstd has no mean/std in the checkpoint to export.")
        steps.append(
            spec.FixedZeroMeanUnitVarianceDescr(
                kwargs=spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
                    axis=spec.AxisId("channel"),
                    mean=[float(normalization.mean[i]) for i in used],
                    std=[float(normalization.std[i]) for i in used],
                )
            )
        )
        notes.append("meanstd divides by std + 1e-6 in the spec (by std in cellseg).")
    else:
        low, high = (
            (normalization.low, normalization.high) if normalization.method == "percentile" else (0.0, 100.0)
        )
        steps.append(
            spec.ScaleRangeDescr(
                kwargs=spec.ScaleRangeKwargs(axes=plane_axes, min_percentile=low, max_percentile=high)
            )
        )
        if normalization.clip:
            steps.append(spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)))
        notes.append(
            "scale_range divides by (high - low + 1e-6) in the spec (by high - low in cellseg); the "
            "model test bounds the difference."
        )
    return steps, notes


def _identifier(text: str) -> str:
    """A channel name as the spec allows it (letters, digits, _ and -)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return cleaned or "channel"


def _sizes(net: PackagedNetwork, step: int, dynamic: bool, settings: ExportSettings, halo: int) -> AxisSizes:
    """H and W the package accepts: stride multiples from one > 2 * halo up, or the fixed export size."""
    if not dynamic:
        return AxisSizes(settings.input_size, 1, True)
    smallest = max(net.min_side, 2 * halo + 1, step)
    smallest += (-smallest) % step
    return AxisSizes((smallest, smallest), step, False)


def _space_axes(spec: Any, sizes: AxisSizes, halo: int) -> tuple[list[Any], list[Any]]:
    ref = {"tensor_id": spec.TensorId(INPUT_ID)}
    inputs, outputs = [], []
    for index, axis in enumerate(("y", "x")):
        size = (
            sizes.minimum[index]
            if sizes.fixed
            else spec.ParameterizedSize(min=sizes.minimum[index], step=sizes.step)
        )
        inputs.append(spec.SpaceInputAxis(id=spec.AxisId(axis), size=size))
        out_size = spec.SizeReference(axis_id=spec.AxisId(axis), **ref)
        outputs.append(
            spec.SpaceOutputAxisWithHalo(id=spec.AxisId(axis), size=out_size, halo=halo)
            if halo
            else spec.SpaceOutputAxis(id=spec.AxisId(axis), size=out_size)
        )
    return inputs, outputs


def _default_name(model: LoadedModel) -> str:
    arch = (model.hparams.get("model") or {}).get("arch", "network")
    run = model.path.parent.parent.name if model.path.parent.name == "checkpoints" else model.path.stem
    return re.sub(r"[^A-Za-z0-9 _().,-]+", "-", f"cellseg {arch} {run}")[:120]


def _weights(
    net: PackagedNetwork, channels: int, multiple: int, settings: ExportSettings, folder: Path, describe: Any
) -> dict[str, Any]:
    """TorchScript and ONNX files of ``net`` in ``folder``, each parity-checked; dynamic only if both are."""
    results = {}
    dynamic = settings.dynamic
    for fmt, name in (("torchscript", "weights.torchscript.pt"), ("onnx", "weights.onnx")):
        fmt_settings = dataclasses.replace(settings, format=fmt, dynamic=dynamic)
        results[fmt] = export_checked(
            net, channels, fmt_settings, describe(fmt_settings), folder / name, multiple
        )
        results[fmt]["path"] = folder / name
        dynamic = dynamic and results[fmt]["dynamic"]
    if dynamic != results["torchscript"]["dynamic"]:  # ONNX fell back to a fixed size: so does the package
        fixed = dataclasses.replace(settings, format="torchscript", dynamic=False)
        results["torchscript"] = {
            **export_checked(
                net, channels, fixed, describe(fixed), folder / "weights.torchscript.pt", multiple
            ),
            "path": folder / "weights.torchscript.pt",
        }
    return results


def _cellseg_config(model: LoadedModel, settings: ExportSettings, dynamic: bool) -> dict[str, Any]:
    """The checkpoint's metadata as the other formats store it, for the package's ``config.cellseg``."""
    metadata = build_metadata(model, settings, dynamic)
    metadata["output"] = f"{OUTPUT_ID}: class probabilities (softmax), then the regression maps"
    return metadata


def _failure(summary: Any) -> str:
    errors = [
        f"{'.'.join(map(str, e.loc)) or 'model'}: {' '.join(e.msg.replace(chr(92), '').split())}"
        for e in summary.errors
    ]
    return "; ".join(errors[:5]) or f"status {summary.status}"


@dataclass(frozen=True)
class PackageContents:
    """Everything the description names: the files written into ``folder`` and what they hold."""

    folder: Path
    name: str
    description: str
    source_names: list[str]
    output_names: list[str]
    preprocessing: list[Any]
    sizes: AxisSizes
    halo: int
    weights: dict[str, dict[str, Any]]
    notes: list[str]


def _tensors(spec: Any, contents: PackageContents) -> tuple[Any, Any]:
    """The input (source planes, preprocessing) and output (probabilities, maps) tensor descriptions."""
    space_in, space_out = _space_axes(spec, contents.sizes, contents.halo)

    def channels(names: Sequence[str]) -> Any:
        return spec.ChannelAxis(channel_names=[spec.Identifier(_identifier(n)) for n in names])

    data = spec.IntervalOrRatioDataDescr(type="float32")
    batch = spec.BatchAxis(size=1) if contents.sizes.fixed else spec.BatchAxis()  # fixed exports: batch 1
    inputs = spec.InputTensorDescr(
        id=spec.TensorId(INPUT_ID),
        axes=[batch, channels(contents.source_names), *space_in],
        test_tensor=spec.FileDescr(source=contents.folder / "test_input.npy"),
        data=data,
        preprocessing=contents.preprocessing,
    )
    outputs = spec.OutputTensorDescr(
        id=spec.TensorId(OUTPUT_ID),
        axes=[batch, channels(contents.output_names), *space_out],
        test_tensor=spec.FileDescr(source=contents.folder / "test_output.npy"),
        data=data,
    )
    return inputs, outputs


def _model_description(
    model: LoadedModel, settings: ExportSettings, options: PackageOptions, contents: PackageContents
) -> Any:
    """The spec's ModelDescr of the package, validated (files hashed); ExportError naming what is invalid."""
    import pydantic
    from bioimageio.spec import ValidationContext
    from bioimageio.spec.model import v0_5 as spec

    inputs, outputs = _tensors(spec, contents)
    weights = contents.weights
    dynamic = all(result["dynamic"] for result in weights.values())
    try:
        with ValidationContext(perform_io_checks=True):
            return spec.ModelDescr(
                name=contents.name,
                description=contents.description,
                authors=[spec.Author(**author) for author in options.authors],
                cite=[spec.CiteEntry(text=UNET_CITATION["text"], doi=spec.Doi(UNET_CITATION["doi"]))],
                license=spec.LicenseId(options.license),
                tags=list(options.tags),
                documentation=spec.FileDescr(source=contents.folder / "README.md"),
                covers=[spec.FileDescr(source=contents.folder / "cover.png")],
                inputs=[inputs],
                outputs=[outputs],
                weights=spec.WeightsDescr(
                    torchscript=spec.TorchscriptWeightsDescr(
                        source=weights["torchscript"]["path"],
                        pytorch_version=spec.Version(torch.__version__.split("+")[0]),
                    ),
                    onnx=spec.OnnxWeightsDescr(
                        source=weights["onnx"]["path"],
                        opset_version=int(weights["onnx"]["metadata"]["opset"]),
                        parent="torchscript",
                    ),
                ),
                config={"cellseg": _cellseg_config(model, settings, dynamic)},
            )
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg']}" for e in error.errors()[:5]
        )
        raise ExportError(
            f"{settings.ckpt}: the package description is not valid ({problems}); nothing was written."
        ) from error


def _test_files(
    model: LoadedModel, used: Sequence[int], sizes: AxisSizes, options: PackageOptions, folder: Path
) -> None:
    """test_input.npy (the planes read, raw), test_output.npy (cellseg's own output) and cover.png."""
    if options.sample is None:
        log.warning(
            "No bioimageio.sample given: the test input and cover are synthetic noise; pass "
            "bioimageio.sample=<image> before sharing the package."
        )
        image = synthetic_sample(len(model.channel_names))
    else:
        image = read_sample(options.sample, model.channel_names)
    image = crop_sample(image, sizes, str(options.sample or "the synthetic sample"))
    expected = cellseg_prediction(model, image)
    test_input = image[list(used)][None].astype(np.float32)
    np.save(folder / "test_input.npy", test_input)
    np.save(folder / "test_output.npy", expected)
    write_cover(folder / "cover.png", test_input[0], expected)


def _halo_for(sizes: AxisSizes, halo: int) -> int:
    """The halo, lowered for a fixed-size package too small for it (the spec needs size > 2 * halo)."""
    largest = (min(sizes.minimum) - 1) // 2
    if halo > largest:
        log.warning(
            "The package has the fixed size %s, too small for bioimageio.halo=%d; using %d.",
            list(sizes.minimum),
            halo,
            largest,
        )
        return largest
    return halo


def _notes(model: LoadedModel, source_names: Sequence[str], normalization_notes: list[str]) -> list[str]:
    notes = [
        *normalization_notes,
        "The channel strategy (which planes, merged how) runs inside the network as a 1x1 convolution; "
        f"the package reads the planes {', '.join(source_names)}.",
    ]
    if model.scale != 1.0:
        notes.append(
            f"The network was trained on images resized by {model.scale:g} (data.scale): resize images by "
            f"that factor before the model and its outputs back (python -m cellseg.predict does both)."
        )
    if model.layout.has_regression:
        notes.append(
            "Instances are decoded from the probabilities and the maps "
            f"({', '.join(model.layout.regression_names)}) by cellseg (python -m cellseg.predict); "
            "the package gives the maps, the decoding settings are in config.cellseg.decoding."
        )
    return notes


def export_bioimageio(
    model: LoadedModel, settings: ExportSettings, options: PackageOptions
) -> dict[str, Any]:
    """Build, test and write the package (atomically, with its JSON report); nothing is written when the
    spec's validation or the model test fails. Returns the report."""
    from bioimageio.core import test_model
    from bioimageio.spec import save_bioimageio_package

    started = time.perf_counter()
    inputs = InputPipeline.from_pipeline(model.pipeline)
    used, mixing = inputs.channels.prediction_mixing()
    if not used:
        raise ConfigError(
            f"{model.path}: every input channel is blank; a package needs at least one image plane."
        )
    inner = AlwaysPad(model.net) if isinstance(model.net, PadToMultiple) else model.net
    net = PackagedNetwork(inner.float().eval(), torch.from_numpy(mixing), len(model.class_names)).eval()
    source_names = [model.channel_names[i] for i in used]
    steps, normalization_notes = preprocessing(inputs.normalization, used)

    def describe(fmt_settings: ExportSettings) -> Any:
        return lambda dynamic: build_metadata(model, fmt_settings, dynamic)

    with tempfile.TemporaryDirectory(prefix="cellseg-bioimageio-") as tmp:
        folder = Path(tmp)
        multiple = input_multiple(model.net)
        weights = _weights(net, len(used), multiple, settings, folder, describe)
        sizes = _sizes(net, multiple, all(w["dynamic"] for w in weights.values()), settings, options.halo)
        _test_files(model, used, sizes, options, folder)
        name = options.name or _default_name(model)
        contents = PackageContents(
            folder=folder,
            name=name,
            description=options.description
            or (
                f"{name}: {len(model.class_names)}-class segmentation "
                f"({', '.join(model.class_names)}) trained with cellseg."
            ),
            source_names=source_names,
            output_names=[*model.class_names, *model.layout.regression_names],
            preprocessing=steps,
            sizes=sizes,
            halo=_halo_for(sizes, options.halo) if sizes.fixed else options.halo,
            weights=weights,
            notes=_notes(model, source_names, normalization_notes),
        )
        (folder / "README.md").write_text(
            readme_text(
                model,
                contents.name,
                contents.description,
                contents.source_names,
                contents.output_names,
                contents.notes,
            )
        )
        description = _model_description(model, settings, options, contents)
        summary = test_model(description)
        if summary.status != "passed":
            raise ExportError(
                f"{settings.ckpt}: the BioImage Model Zoo model test failed ({_failure(summary)}); "
                "nothing was written."
            )
        with atomic_path(settings.output) as target:
            save_bioimageio_package(description, output_path=target)
    report = {
        "format": "bioimageio",
        "output": str(settings.output),
        "checkpoint": str(model.path),
        "size_mb": round(settings.output.stat().st_size / 2**20, 3),
        "inputs": contents.source_names,
        "outputs": contents.output_names,
        "axis_sizes": dataclasses.asdict(sizes),
        "halo": contents.halo,
        "weights": {
            fmt: {k: v for k, v in result.items() if k not in ("path", "metadata")}
            for fmt, result in weights.items()
        },
        "model_test": summary.status,
        "notes": contents.notes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json_atomic(settings.sidecar, report)
    log.info(
        "Exported bioimageio: %s (%.1f MB, TorchScript and ONNX; the model zoo's model test passed)",
        settings.output,
        report["size_mb"],
    )
    return report
