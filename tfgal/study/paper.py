"""The paper's published figures, and this study's beside them with every difference stated.

`PAPER` holds the headline figures published by Ciprijanovic et al. (2022), cited in
``PAPER["source"]``: data, not this package's measurements. They were measured on the
paper's data (TNG100 mock LSST images, 23,487 training galaxies) and sit beside this
study's numbers labelled as the paper's: the absolute latent distances depend on the
architecture and the data, so their DA / baseline ratios are the comparable part.
`headline` gives the rows (each naming the galaxies its number is measured on),
`differences` what differs from the paper, `markdown` the report's section.
"""

from __future__ import annotations

from tfgal.study.markdown import fmt as _fmt, get as _get, table as _table

__all__ = ["PAPER", "DIFFERENCES", "differences", "headline", "markdown"]

PAPER = {
    "source": "Ciprijanovic et al. 2022, Mach. Learn.: Sci. Technol. 3 035007 "
              "(arXiv:2112.14299), on the paper's own data (TNG100 mock LSST images)",
    "resnet18": {
        "accuracy": {"Y10": 0.722, "Y1": 0.429},
        "f1_weighted": {"Y10": 0.723, "Y1": 0.359},
        "distance_attack": {"baseline": {"mean": 18.57, "std": 6.01},
                            "adapted": {"mean": 41.88, "std": 20.79}},
        "distance_noisy": {"baseline": {"mean": 23.4}, "adapted": {"mean": 29.3}},
    },
    "convnet": {
        "distance_attack": {"baseline": {"mean": 3.00}, "adapted": {"mean": 3.76}},
        "distance_noisy": {"baseline": {"mean": 7.5}, "adapted": {"mean": 9.2}},
    },
    "da_gain_y1_accuracy_up_to": 0.23,
    "attack": {"n": 150, "popsize": 400, "iters": 100, "threshold": 0.05},
}


def _ratio(a, b):
    return None if a is None or not b else a / b


def _diff(a, b):
    return None if a is None or b is None else a - b


def _first(results, kind):
    """The label of `kind`'s model at the first seed (None when the study has none)."""
    seed = results["seeds"][0]
    return next((label for label, m in results["members"].items()
                 if m["kind"] == kind and m["seed"] == seed), None)


# Differences from the paper, stated beside every comparison with it (`differences`).
DIFFERENCES = (
    "data: tfgal's GalSim mocks (or imported files), not the paper's TNG100 images",
    "stretch: fitted once on training Y10 images (the paper: per split and depth)",
)


def differences(results):
    """`DIFFERENCES` and those that depend on the study's settings."""
    cfg = results.get("config") or {}
    bands = _get(cfg, "data", "stretch_bands") or "per-band"
    study = cfg.get("study") or {}
    budget = (study.get("attack_popsize"), study.get("attack_iters"))
    paper = (PAPER["attack"]["popsize"], PAPER["attack"]["iters"])
    return (*DIFFERENCES,
            "stretch: one clip pair over all bands, as the paper" if bands == "shared" else
            "stretch: each band clipped to its own percentiles (the paper: one pair over all "
            "bands, which keeps colours; `data.stretch_bands = \"shared\"`)",
            "attacks: only correctly classified galaxies; population "
            f"{budget[0]}, {budget[1]} generations"
            + ("" if budget == paper else f" (the paper: {paper[0]}, {paper[1]})"))


def headline(results):
    """Rows comparing the paper's headline figures with this study's (JSON-able): the
    first seed's baseline and mmd models. Each row names the galaxies its number is
    measured on (``galaxies``); ``paper_bound`` marks a paper figure that is a maximum."""
    ev, att = results["evaluation"], results.get("attack", {})
    src, tgt = results["depths"]["source"], results["depths"]["target"]
    base, da = _first(results, "baseline"), _first(results, "mmd")
    n_eval = results.get("evaluation_n")
    rows = []

    def row(quantity, paper_resnet, paper_convnet, study, galaxies, bound=False):
        rows.append({"quantity": quantity, "paper_resnet18": paper_resnet,
                     "paper_convnet": paper_convnet, "study": study, "galaxies": galaxies,
                     "paper_bound": bound})

    p = PAPER["resnet18"]
    evaluated = f"{n_eval} {results['split']} galaxies"
    for metric, key in (("accuracy", "accuracy"), ("f1_weighted", "f1/weighted")):
        for depth, paper_depth in ((src, "Y10"), (tgt, "Y1")):
            row(f"{metric} at {depth}, no DA", p[metric][paper_depth], None,
                _get(ev, base, depth, key), evaluated)
    row(f"accuracy gain at {tgt} from DA", PAPER["da_gain_y1_accuracy_up_to"],
        None, _diff(_get(ev, da, tgt, "accuracy"), _get(ev, base, tgt, "accuracy")),
        evaluated, bound=True)
    ratio = results.get("latent_distance_ratio") or {}
    per_model = _get(results, "latent_measures", "per_model") or {}
    common = _get(results, "latent_measures", "galaxies", "common") or {}
    for kind, label in (("attack", "base -> attacked"), ("noisy", f"base -> {tgt}")):
        for paper_model, model in (("baseline", base), ("adapted", da)):
            if kind == "attack":  # the paper's measure: each model's own successes
                d = _get(att, model, "latent_distance", "attack_class_change") or {}
                value, where = d.get("mean"), (f"its own attacks that changed the class "
                                               f"(n={d.get('n', 0)})")
            else:  # raw: the scale-free mean on the common galaxies times the scale
                m = per_model.get(model) or {}
                est = _get(m, "noisy", "estimate")
                value = None if est is None else est * m["scale"]
                where = f"{common.get('what', 'n/a')} (n={common.get('n', 0)})"
            row(f"latent distance {label}, {model or paper_model}",
                _get(p, f"distance_{kind}", paper_model, "mean"),
                _get(PAPER["convnet"], f"distance_{kind}", paper_model, "mean"), value, where)
        r = ratio.get(kind) or {}
        row(f"latent distance {label}, DA / baseline (raw)",
            *(_ratio(_get(PAPER[m], f"distance_{kind}", "adapted", "mean"),
                     _get(PAPER[m], f"distance_{kind}", "baseline", "mean"))
              for m in ("resnet18", "convnet")),
            r.get("ratio"), f"{r.get('galaxies', 'n/a')} (n={r.get('n', 0)}), paired")
    return rows


def _paper_cell(row, key):
    value = row[key]
    if value is None:
        return "n/a"
    return f"up to {_fmt(value)}" if row.get("paper_bound") else _fmt(value)


def markdown(results):
    """The report's section setting the paper's headline figures beside this study's."""
    rows = [(r["quantity"], _paper_cell(r, "paper_resnet18"), _paper_cell(r, "paper_convnet"),
             _fmt(r["study"]), r.get("galaxies", "n/a")) for r in results["paper_comparison"]]
    return "\n".join([
        "## The paper's headline figures beside this study's", "",
        f"Paper columns: {PAPER['source']}. They are the paper's numbers on the paper's "
        f"data, not reruns. This study: {results['model_name']} on "
        f"`{results['dataset']['root']}`, first seed. Differences: "
        + "; ".join(differences(results)) + ". Raw distances depend on each model's latent scale; "
        "the scale-free table above is the comparable one.", "",
        _table(("quantity", "paper, ResNet18", "paper, ConvNet", "this study",
                "this study's galaxies"), rows)])
