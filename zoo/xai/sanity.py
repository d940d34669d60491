"""Sanity checks for attribution maps, after Adebayo et al., "Sanity Checks for Saliency Maps"
(NeurIPS 2018), and a faithfulness check (deletion / insertion, Petsiuk et al. 2018).

A map that explains the model must change when the model's parameters are destroyed and when
the model is trained on labels that mean nothing; a map that explains the prediction must pick
cells whose removal lowers the prediction faster than removing cells in random order.

- Parameter randomisation, cascading: trainable weights are re-drawn layer by layer from the
  classifier down (normal, each tensor's own mean and standard deviation; BatchNorm's moving
  statistics are kept), and after each layer the maps are compared with the trained model's.
  Independent: each layer alone is re-drawn. Metrics per clip, over the clip's own cells:
  Spearman rank correlation of |map| (absolute) and of the signed map, and SSIM of the [0, 1]
  maps; reported as the mean over clips.
  PASS when the mean absolute Spearman after the full cascade is below RANDOMISATION_MAX.
  Whisper models are randomised by groups of weights: the head's layers, then the encoder's
  final layer norm, transformer layers from the top down and convolution stem
  (zoo.xai.whisper.parameter_groups).
- Data randomisation: the same architecture, freshly initialised, trained for a short run on
  permuted labels; its maps are compared with the trained model's the same way.
  PASS when the mean absolute Spearman is below RANDOMISATION_MAX. On Whisper models only the
  head is re-initialised and trained; the encoder stays pretrained (zoo.xai.permuted.
  train_permuted; optionally its top layers are then trained on the permuted labels too).
- Faithfulness: cells (time-frequency cells, or vector dimensions) are replaced by a baseline
  in order of attribution (deletion) or restored from the baseline in that order (insertion),
  in STEPS steps, and the probability of the explained class is recorded; random orders are the
  baseline. AUC = mean probability over the curve (fraction 0..1). The baseline value is the
  clip's per-channel mean over its frames (0 after per-utterance normalisation), nudged off
  zero so a frame never looks like padding; for SSL vectors it is input_norm's moving mean.
  PASS when deletion AUC is below the random order's by at least FAITHFUL_MIN_GAP and
  insertion AUC above it by at least that much. Maps with one value per frame (Grad-CAM over a
  Whisper encoder's frames) remove whole frames; their random order is one of whole frames
  too (random_unit 'frame'), so that both orders perturb at the same granularity.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

RANDOMISATION_MAX = 0.5
FAITHFUL_MIN_GAP = 0.01
STEPS = 20
SSIM_WINDOW = 7


# ---------------------------------------------------------------- similarity of maps

def spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(stats.spearmanr(a, b).statistic)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004) with a uniform window, as skimage's
    default (7 cells per axis, sample covariance), for 1-D or 2-D maps."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    size = tuple(min(SSIM_WINDOW, n) for n in a.shape)
    n = np.prod(size)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = ndimage.uniform_filter(a, size), ndimage.uniform_filter(b, size)
    cov = n / max(n - 1, 1)
    var_a = cov * (ndimage.uniform_filter(a * a, size) - mu_a ** 2)
    var_b = cov * (ndimage.uniform_filter(b * b, size) - mu_b ** 2)
    cov_ab = cov * (ndimage.uniform_filter(a * b, size) - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / \
        ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def compare_maps(first: list, second: list, first_signed: list, second_signed: list) -> dict:
    """Mean (and std) over clips of Spearman |.|, Spearman signed and SSIM."""
    rows = [(spearman(np.abs(fs), np.abs(ss)), spearman(fs, ss), ssim(f, s))
            for f, s, fs, ss in zip(first, second, first_signed, second_signed)]
    arr = np.array(rows)
    return {"spearman_abs": float(arr[:, 0].mean()), "spearman_abs_std": float(arr[:, 0].std()),
            "spearman_signed": float(arr[:, 1].mean()),
            "spearman_signed_std": float(arr[:, 1].std()),
            "ssim": float(arr[:, 2].mean()), "ssim_std": float(arr[:, 2].std())}


# ---------------------------------------------------------------- parameter randomisation

def weighted_layers(model) -> list[str]:
    """Layers with trainable weights, from the output down (the cascade's order)."""
    return [layer.name for layer in reversed(model.layers) if layer.trainable_weights]


def parameter_groups(model) -> list[tuple[str, list]]:
    """(name, variables) re-drawn together, in the cascade's order: the layers with trainable
    weights from the output down; for Whisper models the encoder's groups after the head's."""
    from zoo.xai.whisper import find_encoder, parameter_groups as whisper_groups

    if find_encoder(model) is not None:
        return whisper_groups(model)
    return [(name, list(model.get_layer(name).trainable_weights))
            for name in weighted_layers(model)]


def randomise(variables, rng: np.random.Generator) -> None:
    for var in variables:
        value = np.asarray(var.numpy())
        wide = value.astype(np.float64)  # float16 weights: statistics without overflow
        scale = wide.std() or np.abs(wide).mean() or 0.05
        var.assign(rng.normal(wide.mean(), scale, value.shape).astype(value.dtype))


def _maps(explainer, clips, targets, progress):
    from zoo.xai.data import attribute

    both, _ = attribute(explainer, clips, targets, progress=progress, signed="both")
    return [b[0] for b in both], [b[1] for b in both]


def parameter_randomisation(explainer, clips, targets, seed: int = 0, progress=False,
                            independent_layers: bool = True) -> dict:
    """Cascading and independent randomisation of the explainer's (private) model copy; the
    trained weights are restored afterwards."""
    reference = _maps(explainer, clips, targets, progress)
    if explainer.linear is None:  # a model-independent explainer: randomising changes nothing
        layers = [name for name, _ in parameter_groups(explainer.model)]
        same = compare_maps(*reference[:1], *reference[:1], *reference[1:], *reference[1:])
        cascade = [{"layer": n, **same} for n in layers]
        independent = [{"layer": n, **same} for n in layers]
    else:
        model = explainer.linear
        trained = [w.copy() for w in model.get_weights()]
        groups = parameter_groups(model)
        rng = np.random.default_rng(seed)
        cascade, independent = [], []
        try:
            for name, variables in groups:
                randomise(variables, rng)
                maps = _maps(explainer, clips, targets, False)
                cascade.append({"layer": name, **compare_maps(reference[0], maps[0],
                                                              reference[1], maps[1])})
            model.set_weights(trained)
            for name, variables in groups if independent_layers else []:
                randomise(variables, rng)
                maps = _maps(explainer, clips, targets, False)
                independent.append({"layer": name, **compare_maps(reference[0], maps[0],
                                                                  reference[1], maps[1])})
                model.set_weights(trained)
        finally:
            model.set_weights(trained)
    final = cascade[-1]["spearman_abs"] if cascade else 1.0
    changed = [r["layer"] for r in independent if r["spearman_abs"] < RANDOMISATION_MAX]
    return {
        "cascade": cascade, "independent": independent,
        "pass": bool(final < RANDOMISATION_MAX),
        "criterion": f"mean |Spearman| (absolute maps) after randomising every layer < "
                     f"{RANDOMISATION_MAX}",
        "value": final,
        "independent_layers_changing_map": changed,
    }


# ---------------------------------------------------------------- data randomisation

def data_randomisation(explainer, train_clips, clips, targets, epochs: int = 5,
                       seed: int = 0, progress: bool = False, retrain_top: int = 0) -> dict:
    """Maps of the trained model against maps of the same architecture trained on permuted
    labels (same method, layer and target classes). Whisper models: the head alone retrained
    on the pretrained encoder; with retrain_top, also that model with the encoder's top layers
    trained on the permuted labels (under 'retrained_top')."""
    from zoo.xai.attribution import Explainer

    reference = _maps(explainer, clips, targets, False)
    from zoo.xai.permuted import train_on_permuted_labels, train_permuted

    if explainer.encoder is not None:
        runs = train_permuted(explainer.model, train_clips, epochs, seed, retrain_top, progress)
    else:
        permuted, accuracy = train_on_permuted_labels(explainer.model, train_clips, epochs,
                                                      seed, progress=progress)
        runs = {"head": (permuted, accuracy, "the whole model, freshly initialised")}
    results = {}
    for kind, (permuted, accuracy, how) in runs.items():
        other = Explainer(permuted, explainer.method, explainer.layer)
        maps = _maps(other, clips, targets, False)
        results[kind] = {**compare_maps(reference[0], maps[0], reference[1], maps[1]),
                         "permuted_label_accuracy": accuracy, "trained": how}
    result = results["head"]
    out = {**result, "epochs": epochs, "train_clips": len(train_clips),
           "pass": bool(result["spearman_abs"] < RANDOMISATION_MAX),
           "criterion": f"mean |Spearman| against the permuted-label model < "
                        f"{RANDOMISATION_MAX}",
           "value": result["spearman_abs"]}
    if "top" in results:
        out["retrained_top"] = {**results["top"], "layers": retrain_top,
                                "pass": bool(results["top"]["spearman_abs"] <
                                             RANDOMISATION_MAX)}
    return out


# ---------------------------------------------------------------- faithfulness

def baseline_for(explainer, x: np.ndarray) -> np.ndarray:
    """What a deleted cell is set to (see the module docstring): one clip's
    zoo.xai.attribution.baseline."""
    from zoo.xai.attribution import baseline

    return baseline(np.asarray(x, np.float32)[None], explainer.model)[0]


def _curve_inputs(x, base, order, counts, insert: bool) -> np.ndarray:
    flat_x, flat_b = x.ravel(), base.ravel()
    out = np.empty((len(counts),) + x.shape, np.float32)
    for j, k in enumerate(counts):
        cur = (flat_b if insert else flat_x).copy()
        cur[order[:k]] = (flat_x if insert else flat_b)[order[:k]]
        out[j] = cur.reshape(x.shape)
    return out


def random_order(rng: np.random.Generator, shape, unit: str = "cell") -> np.ndarray:
    """A random order of a [T, C] clip's cells (flat indices): cells, or whole frames."""
    if unit == "cell":
        return rng.permutation(int(np.prod(shape)))
    frames, channels = shape
    return (rng.permutation(frames)[:, None] * channels + np.arange(channels)).ravel()


def faithfulness(explainer, clips, targets, maps, steps: int = STEPS, seed: int = 0,
                 progress: bool = False, random_unit: str = "cell") -> dict:
    """Deletion and insertion curves of the target probability, attribution order against a
    random order (of cells, or with random_unit='frame' of whole frames), with their AUCs."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    fractions = np.linspace(0, 1, steps + 1)
    curves = {k: [] for k in ("deletion", "deletion_random", "insertion", "insertion_random")}
    for i in tqdm(range(len(clips)), desc="deletion/insertion", disable=not progress,
                  leave=False):
        x = np.asarray(clips.x[i], np.float32)
        base = baseline_for(explainer, x)
        n = x.size
        counts = np.round(fractions * n).astype(int)
        attr = np.argsort(-np.asarray(maps[i]).ravel(), kind="stable")
        rand = random_order(rng, x.shape, random_unit)
        batch = np.concatenate([_curve_inputs(x, base, attr, counts, False),
                                _curve_inputs(x, base, rand, counts, False),
                                _curve_inputs(x, base, attr, counts, True),
                                _curve_inputs(x, base, rand, counts, True)])
        p = explainer.probabilities(batch)[:, int(targets[i])].reshape(4, -1)
        for key, row in zip(curves, p):
            curves[key].append(row)
    out = {"fractions": fractions.tolist(), "steps": steps, "clips": len(clips),
           "random_unit": random_unit}
    auc = {}
    for key, rows in curves.items():
        rows = np.array(rows)
        out[key] = rows.mean(axis=0).tolist()
        auc[key] = np.trapezoid(rows, fractions, axis=1)
        out[f"auc_{key}"] = float(auc[key].mean())
    deletion_gap = out["auc_deletion_random"] - out["auc_deletion"]
    insertion_gap = out["auc_insertion"] - out["auc_insertion_random"]
    out.update(
        deletion_gap=deletion_gap, insertion_gap=insertion_gap,
        deletion_faster_share=float((auc["deletion"] < auc["deletion_random"]).mean()),
        deletion_pass=bool(deletion_gap >= FAITHFUL_MIN_GAP),
        insertion_pass=bool(insertion_gap >= FAITHFUL_MIN_GAP),
        criterion=f"deletion AUC <= random - {FAITHFUL_MIN_GAP} and insertion AUC >= random + "
                  f"{FAITHFUL_MIN_GAP}")
    out["pass"] = out["deletion_pass"] and out["insertion_pass"]
    return out


# ---------------------------------------------------------------- all checks for one method

def run_checks(explainer, clips, targets=None, train_clips=None, epochs: int = 5,
               seed: int = 0, steps: int = STEPS, progress: bool = False,
               retrain_top: int = 0) -> dict:
    """Every check for one explainer on one model's clips; targets default to the model's
    predicted classes. train_clips: what the permuted-label model trains on (default: the
    clips themselves); retrain_top: Whisper models, see data_randomisation."""
    from zoo.xai.data import attribute

    maps, probs = attribute(explainer, clips, None, progress=progress)
    if targets is None:
        targets = probs.argmax(axis=1)
    return {
        "method": explainer.method, "layer": explainer.layer, "clips": len(clips),
        "parameter_randomisation": parameter_randomisation(explainer, clips, targets, seed,
                                                           progress),
        "data_randomisation": data_randomisation(explainer, train_clips or clips, clips,
                                                 targets, epochs, seed, progress, retrain_top),
        "faithfulness": faithfulness(explainer, clips, targets, maps, steps, seed, progress,
                                     "frame" if explainer.encoder is not None and
                                     explainer.layer else "cell"),
    }


def verdicts(result: dict) -> dict:
    """{check: 'pass' | 'FAIL'} of one run_checks result."""
    return {check: "pass" if result[check]["pass"] else "FAIL"
            for check in ("parameter_randomisation", "data_randomisation", "faithfulness")}
