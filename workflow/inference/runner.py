"""Run an ONNX detector (NanoDet or Ultralytics YOLO, with or without masks) on whole frames.

Boxes and masks always come back in pixels of the ORIGINAL frame, whatever the model input,
letterboxing, tiling or flipping in between.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from workflow.domain.detections import Detections, Provenance
from workflow.domain.errors import ConfigurationError, InferenceFailed, ModelNotProvisioned
from workflow.inference.candidates import Candidates, FloatArray, IntArray
from workflow.inference.centernet import decode_centernet
from workflow.inference.fp16 import load_for_cpu
from workflow.inference.images import DECODE_BUDGET, RgbImage, decode_reduced
from workflow.inference.letterbox import Geometry, letterbox_geometry, place, squash_geometry
from workflow.inference.masks import encode_rle, yolo_frame_mask
from workflow.inference.nanodet import decode_nanodet
from workflow.inference.pooling import pool, select
from workflow.inference.settings import InferenceSettings
from workflow.inference.spec import ModelSpec, spec_from_model
from workflow.inference.tiling import View, plan_views
from workflow.inference.yolo import decode_yolo, infer_num_classes

log = logging.getLogger(__name__)

PRE_NMS_TOP_K = 3000  # per view: bounds NMS time when thresholds are set very low
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass(frozen=True)
class _ViewResult:
    view: View
    geometry: Geometry
    candidates: Candidates  # boxes in VIEW pixels
    protos: FloatArray | None


class OnnxDetector:
    """One onnxruntime session and the way to run it; thread-safe ``predict``."""

    def __init__(
        self,
        session: ort.InferenceSession,
        spec: ModelSpec,
        settings: InferenceSettings,
        name: str,
        version: str,
    ) -> None:
        self.session = session
        self.spec = spec
        self.settings = settings
        self.name = name
        self.version = version
        self._input = session.get_inputs()[0]
        self._dtype = _DTYPES.get(self._input.type, np.float32)
        self.input_w, self.input_h = _input_size(self._input.shape, settings.input_size, session)
        self._thresholds = _class_thresholds(spec.names, settings)
        self._segments = len(session.get_outputs()) > 1 and spec.format == "yolo"  # segmentation protos

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        settings: InferenceSettings | None = None,
        name: str | None = None,
        spec: ModelSpec | None = None,
    ) -> OnnxDetector:
        """Load an ONNX detector; its format and class names come from the file unless ``spec``."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotProvisioned(f"model file {path} does not exist")
        settings = settings or InferenceSettings()
        options = ort.SessionOptions()
        if settings.intra_op_num_threads:
            options.intra_op_num_threads = settings.intra_op_num_threads
        session = _session(path, options)
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        spec = spec or spec_from_model(metadata, [o.shape for o in session.get_outputs()])
        if spec.format == "yolo" and not spec.names:
            spec = _numbered_names(spec, session)
        version = spec.version or f"sha256:{_sha256(path)[:12]}"
        return cls(session, spec, settings, name or metadata.get("autolabel.name") or path.stem, version)

    def with_settings(self, settings: InferenceSettings) -> OnnxDetector:
        """The same loaded model run with other settings (threads stay as loaded)."""
        return OnnxDetector(self.session, self.spec, settings, self.name, self.version)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.names

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        """Decode an encoded image (InvalidImage / ImageTooLarge on bad input) and predict.

        A frame the model sees whole (not tiled) is decoded at reduced size, never below the model
        input (``decode_reduced``), and its boxes scaled back to the full frame; decodes share the
        process's pixel budget (``DECODE_BUDGET``), so concurrent large frames wait their turn
        instead of all being in memory at once."""
        with DECODE_BUDGET.hold(self._decode_pixels(data)):
            image, (full_w, full_h) = decode_reduced(data, frame, self._fit)
            height, width = image.shape[:2]
            dets = self.predict(image, frame)
        if (width, height) == (full_w, full_h):
            return dets
        scale = np.array([full_w / width, full_h / height] * 2, np.float32)
        return replace(dets, boxes=dets.boxes * scale, image_width=full_w, image_height=full_h)

    def _decode_pixels(self, data: bytes) -> int:
        """Pixels a decode of ``data`` will hold, from its header (a JPEG's reduced decode: at most
        4x its fit, the draft scale being a power of 2); 1 when the header is unreadable."""
        try:
            with Image.open(io.BytesIO(data)) as header:
                (width, height), jpeg = header.size, header.format == "JPEG"
        except Exception:  # noqa: BLE001 - decode_reduced reports the real error
            return 1
        fit = self._fit(width, height) if jpeg else None  # other formats load whole, then reduce
        return width * height if fit is None else min(width * height, 4 * fit[0] * fit[1])

    def _fit(self, full_w: int, full_h: int) -> tuple[int, int] | None:
        """The smallest decode size the model input allows for a full_w x full_h frame (None: full)."""
        if self._segments or self.settings.tile_side(full_w, self.input_w, self.input_h) is not None:
            return None
        ratio = max(self.input_w / full_w, self.input_h / full_h)  # the side that reaches its input
        return max(1, int(full_w * ratio + 0.999)), max(1, int(full_h * ratio + 0.999))

    def predict(self, image: RgbImage, frame: str = "") -> Detections:
        """Detections of one (H, W, 3) uint8 RGB frame, in that frame's pixels."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InferenceFailed(
                frame, f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
            )
        height, width = image.shape[:2]
        s = self.settings
        tile = s.tile_side(width, self.input_w, self.input_h)
        views = plan_views(width, height, tile, s.tile_overlap, s.flip_tta, s.tile_band)
        results = [self._run_view(image, view, frame) for view in views]
        return self._pool(results, width, height, frame)

    def provenance(self) -> Provenance:
        """Which model ran, and how (the settings, with the input size actually used)."""
        settings: dict[str, Any] = self.settings.for_provenance()
        settings["input_size"] = [self.input_w, self.input_h]
        settings["format"] = self.spec.format
        return Provenance(model=self.name, version=self.version, settings=settings)

    def _run_view(self, image: RgbImage, view: View, frame: str) -> _ViewResult:
        pixels = view.crop(image)
        fit = letterbox_geometry if self.settings.letterbox else squash_geometry
        geometry = fit(view.w, view.h, self.input_w, self.input_h)
        tensor = self._to_tensor(place(pixels, geometry, self.spec.pad_value))
        try:
            outputs = self.session.run(None, {self._input.name: tensor})
        except Exception as exc:  # onnxruntime's errors carry no common base class
            raise InferenceFailed(frame, f"onnxruntime failed: {exc}") from exc
        candidates, protos = self._decode(outputs)
        candidates = _top_k(candidates, PRE_NMS_TOP_K)
        boxes = geometry.to_source(candidates.boxes)
        candidates = Candidates(boxes, candidates.scores, candidates.class_ids, candidates.coeffs)
        return _ViewResult(view, geometry, candidates, protos)

    def _to_tensor(self, canvas: RgbImage) -> npt.NDArray[Any]:
        pixels = canvas[:, :, ::-1] if self.spec.color == "BGR" else canvas
        mean = np.asarray(self.spec.mean, np.float32)
        inv_std = 1.0 / np.asarray(self.spec.std, np.float32)
        normalized = (pixels.astype(np.float32) - mean) * inv_std
        return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None]).astype(self._dtype, copy=False)

    def _decode(self, outputs: list[Any]) -> tuple[Candidates, FloatArray | None]:
        if self.spec.format == "nanodet":
            return decode_nanodet(outputs, self.spec, self.input_w, self.input_h, self._thresholds), None
        if self.spec.format == "centernet":
            return decode_centernet(outputs, self.input_w, self.input_h, self._thresholds), None
        return decode_yolo(outputs, len(self.spec.names), self._thresholds)

    def _pool(self, results: list[_ViewResult], width: int, height: int, frame: str) -> Detections:
        pooled = pool([(r.view, r.candidates) for r in results], width, height)
        kept = select(pooled, self.settings.nms_iou, self.settings.max_detections)
        class_ids = pooled.class_ids[kept]
        with_masks = results[0].protos is not None
        return Detections(
            boxes=pooled.boxes[kept],
            scores=pooled.scores[kept],
            class_ids=class_ids,
            class_names=tuple(self.spec.names[int(c)] for c in class_ids),
            image_width=width,
            image_height=height,
            provenance=self.provenance(),
            frame=frame,
            masks=self._masks(results, pooled.origin[kept], width, height) if with_masks else None,
        )

    def _masks(
        self, results: list[_ViewResult], origin: IntArray, width: int, height: int
    ) -> tuple[dict[str, Any], ...]:
        out = []
        for view_index, row in origin:
            result = results[int(view_index)]
            cands = result.candidates
            assert cands.coeffs is not None and result.protos is not None
            mask = yolo_frame_mask(
                cands.coeffs[row],
                result.protos,
                cands.boxes[row],
                result.geometry,
                result.view,
                width,
                height,
            )
            out.append(encode_rle(mask))
        return tuple(out)


def load_detector(name_or_path: str | Path, settings: InferenceSettings | None = None) -> OnnxDetector:
    """A detector for a known model name (resolved through the model registry) or an .onnx path."""
    text = str(name_or_path)
    try:
        from workflow.models.registry import resolve_model
    except ImportError:
        return OnnxDetector.from_path(text, settings)
    path = resolve_model(text)
    name = text if Path(text).suffix.lower() != ".onnx" else None
    return OnnxDetector.from_path(path, settings, name=name)


def _session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    providers = ["CPUExecutionProvider"]
    try:
        source = load_for_cpu(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for files that are not ONNX
        raise ConfigurationError(f"cannot load ONNX model {path}: {exc}") from exc
    if not isinstance(source, str):
        try:
            return ort.InferenceSession(source, options, providers=providers)
        except Exception as exc:  # an upcast graph onnxruntime rejects: run the original FP16 graph
            log.warning("running %s in FP16: its FP32 upcast does not load (%s)", path, exc)
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ConfigurationError(f"cannot load ONNX model {path}: {exc}") from exc


def _input_size(shape: list[Any], wanted: int | None, session: ort.InferenceSession) -> tuple[int, int]:
    dims = shape[-2:] if len(shape) == 4 else [None, None]
    h, w = dims
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        if wanted is not None and (wanted, wanted) != (w, h):
            raise ConfigurationError(f"input_size {wanted} does not fit this model's fixed input {w}x{h}")
        return w, h
    metadata = session.get_modelmeta().custom_metadata_map
    size = wanted or int(metadata.get("input_size", 0)) or _imgsz(metadata.get("imgsz", "")) or 640
    size = -(-size // 32) * 32  # dynamic models need a multiple of their largest stride
    return size, size


def _imgsz(text: str) -> int:
    digits = [int(p) for p in text.strip("[]() ").replace(",", " ").split() if p.isdigit()]
    return max(digits) if digits else 0


def _class_thresholds(names: tuple[str, ...], settings: InferenceSettings) -> FloatArray:
    """Per class id, the score threshold; ``inf`` for classes filtered out."""
    unknown = sorted((set(settings.classes or ()) | set(settings.per_class_thresholds)) - set(names))
    if unknown:
        raise ConfigurationError(f"unknown class names {unknown}; this model knows {list(names)}")
    wanted = set(settings.classes) if settings.classes is not None else set(names)
    return np.asarray([settings.threshold_for(n) if n in wanted else np.inf for n in names], dtype=np.float32)


def _top_k(candidates: Candidates, k: int) -> Candidates:
    if len(candidates) <= k:
        return candidates
    order = np.argsort(-candidates.scores, kind="stable")[:k]
    return candidates.take(order.astype(np.int64))


def _numbered_names(spec: ModelSpec, session: ort.InferenceSession) -> ModelSpec:
    outputs = session.get_outputs()
    channels = outputs[0].shape[1]
    protos = outputs[1].shape[1] if len(outputs) > 1 else None
    if not isinstance(channels, int) or (protos is not None and not isinstance(protos, int)):
        raise ConfigurationError("YOLO model without `names` metadata and with dynamic channel counts")
    n = infer_num_classes(channels, protos)
    return ModelSpec(**{**spec.__dict__, "names": tuple(f"class_{i}" for i in range(n))})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
