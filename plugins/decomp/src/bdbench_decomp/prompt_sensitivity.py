"""prompt_sensitivity probe (the critique, SPEC seed 000, question 3): how much do CACC, ASR and Decomp-Det
depend on the zero-shot prompts?

For each template set in ``sets`` it rebuilds the zero-shot head on ``classifier.model``
(``ZeroShotClassifier.build``) and keeps the classifier's image side: its ``input_transform``, ``embedder``
and ``output_map``. On a pipeline such as ``[decomp_rep]`` the probe therefore measures the defended
pipeline under each set of prompts. The sets:

- ``single``: the first of ``ctx.templates`` only;
- ``ensemble``: all of ``ctx.templates``, the runner's own head (so this row reproduces the pipeline's CACC);
- ``paraphrased``: all templates, each class name replaced through ``paraphrases`` (default: the generated
  world's shapes, :data:`DEFAULT_PARAPHRASES`; a scene-world class keeps its colour and paraphrases its shape);
  names without an entry stay as they are, and the row reports
  how many were replaced.

Per set: CACC on ``data.clean_images``, ASR on ``data.triggered_images`` (non-target images, SPEC §5), and
Decomp-Det's AUROC and TPR at 5% FPR (clean vs triggered images). Decomp-Det scores images by their
last-layer head decomposition and never reads the class embeddings, so its AUROC is the same for every
set: a built-in consistency check, and the reminder that the text side cannot move it.

Output: table ``prompt_sensitivity`` (one row per set), figure ``prompt_sensitivity`` (bars of CACC and
ASR per set), summary ``cacc_{set}``, ``asr_{set}``, ``auroc_{set}``, ``tpr_at_5fpr_{set}``,
``n_paraphrased``, and ``cacc_spread`` / ``asr_spread`` (largest minus smallest value over the sets).
"""

from __future__ import annotations

from typing import Sequence

from pydantic import Field, field_validator

from bench_core import Classifier, PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ZeroShotClassifier
from bench_core.metrics import accuracy, asr, auroc, tpr_at_fpr
from bench_core.zeroshot import batched_logits

from bdbench_decomp.decomp_det import DecompDet
from bdbench_decomp.repair import REFERENCE_THREAT

TEMPLATE_SETS: tuple[str, ...] = ("single", "ensemble", "paraphrased")

DEFAULT_PARAPHRASES: dict[str, str] = {
    "circle": "round disc", "square": "four-sided box", "triangle": "three-sided figure", "star": "pentagram",
    "cross": "plus sign", "diamond": "rhombus", "ring": "hollow disc", "crescent": "moon sliver",
    "arrow": "pointer", "hexagon": "six-sided polygon",
}
"""Paraphrases of ``bench_core.data.world.CLASSES``, none containing the original word (bdbench's choice)."""


def paraphrase(name: str, table: dict[str, str]) -> str:
    """``table[name]``; else, for a multi-word name, its last word through the table ("red circle" -> "red round
    disc", the scene world's colour x shape classes); else ``name`` unchanged."""
    if name in table:
        return table[name]
    head, _, last = name.rpartition(" ")
    return f"{head} {table[last]}" if head and last in table else name


class PromptSensitivityConfig(PluginConfig):
    sets: tuple[str, ...] = TEMPLATE_SETS  # template sets to compare, in this order
    paraphrases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PARAPHRASES))  # class -> paraphrase

    @field_validator("sets")
    @classmethod
    def _known_sets(cls, sets: tuple[str, ...]) -> tuple[str, ...]:
        if not sets:
            raise ValueError(f"sets is empty; choose from {', '.join(TEMPLATE_SETS)}")
        for name in sets:
            if name not in TEMPLATE_SETS:
                raise ValueError(f"unknown template set {name!r}; allowed: {', '.join(TEMPLATE_SETS)}")
        if len(set(sets)) != len(sets):
            raise ValueError(f"sets {list(sets)} repeats a name")
        return sets

    @field_validator("paraphrases")
    @classmethod
    def _no_blank_paraphrase(cls, paraphrases: dict[str, str]) -> dict[str, str]:
        blank = sorted(k for k, v in paraphrases.items() if not v.strip())
        if blank:
            raise ValueError(f"paraphrases has blank values for {blank}")
        return paraphrases


def with_prompts(classifier: Classifier, classnames: Sequence[str], templates: Sequence[str]) -> ZeroShotClassifier:
    """A zero-shot head built from (classnames, templates) on ``classifier``'s model and image stages."""
    head = ZeroShotClassifier.build(classifier.model, classnames, templates)
    return head.replace(embedder=getattr(classifier, "embedder", None),
                        input_transform=getattr(classifier, "input_transform", None),
                        output_map=getattr(classifier, "output_map", None))


class PromptSensitivity(Probe):
    name = "prompt_sensitivity"
    version = "0.1.0"
    Config = PromptSensitivityConfig
    threat_model = REFERENCE_THREAT  # Decomp-Det's prototypes come from the clean reference
    summary = "CACC, ASR and Decomp-Det AUROC with one template, the template ensemble and paraphrased names"

    def prompts(self, template_set: str, ctx: RunContext) -> tuple[list[str], list[str], int]:
        """(class names, templates, number of names paraphrased) of one template set."""
        names, templates = list(ctx.classnames), list(ctx.templates)
        if not templates:
            raise ValueError("the context has no zero-shot templates")
        if template_set == "single":
            return names, templates[:1], 0
        if template_set == "ensemble":
            return names, templates, 0
        if template_set == "paraphrased":
            new = [paraphrase(n, self.config.paraphrases) for n in names]
            return new, templates, sum(a != b for a, b in zip(names, new))
        raise ValueError(f"unknown template set {template_set!r}; allowed: {', '.join(TEMPLATE_SETS)}")

    def run(self, classifier: Classifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        rows = []
        for template_set in self.config.sets:
            names, templates, n_paraphrased = self.prompts(template_set, ctx)
            clf = with_prompts(classifier, names, templates)
            clean_pred = batched_logits(clf, data.clean_images).argmax(dim=1)
            trig_pred = batched_logits(clf, data.triggered_images).argmax(dim=1)
            detector = DecompDet()
            detector.fit(clf, ctx)
            s_clean, s_trig = detector.score(data.clean_images).cpu(), detector.score(data.triggered_images).cpu()
            rows.append({"template_set": template_set, "n_templates": len(templates),
                         "n_paraphrased": n_paraphrased,
                         "cacc": accuracy(clean_pred, data.clean_labels),
                         "asr": asr(trig_pred, data.triggered_labels, data.target_class),
                         "decomp_det_auroc": auroc(s_clean, s_trig),
                         "decomp_det_tpr_at_5fpr": tpr_at_fpr(s_clean, s_trig, 0.05)})
        return ProbeResult(tables={"prompt_sensitivity": rows}, figures={"prompt_sensitivity": self._figure(rows)},
                           summary=self._summary(rows))

    @staticmethod
    def _summary(rows: list[dict]) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in rows:
            s = r["template_set"]
            out.update({f"cacc_{s}": r["cacc"], f"asr_{s}": r["asr"], f"auroc_{s}": r["decomp_det_auroc"],
                        f"tpr_at_5fpr_{s}": r["decomp_det_tpr_at_5fpr"]})
        out["n_paraphrased"] = float(max(r["n_paraphrased"] for r in rows))
        for metric in ("cacc", "asr"):
            values = [r[metric] for r in rows]
            out[f"{metric}_spread"] = max(values) - min(values)
        return out

    @staticmethod
    def _figure(rows: list[dict]) -> dict:
        return {"type": "bar", "title": "Zero-shot CACC and ASR per prompt template set",
                "xlabel": "template set", "ylabel": "rate", "x": [r["template_set"] for r in rows],
                "series": {"CACC": [r["cacc"] for r in rows], "ASR": [r["asr"] for r in rows]}}
