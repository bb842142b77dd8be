"""Auditing judges and invariant detectors on labelled probes a user brings: reading JSONL, CSV and
Parquet (RewardBench columns too), named errors for bad files, calibration error, and the audits on
the bundled probe set (tools/judges/probes/)."""

from __future__ import annotations

import importlib.util
import json
import random
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guardrails.constitution import default_constitution_yaml, parse_constitution
from guardrails.inputs import InputLimits
from tether_types import EXIT_USAGE, TetherError
from tools.judges import JUDGES, JudgeItem, PairItem, PairVerdict, Verdict, combine_orders
from tools.judges.calibration import calibration
from tools.judges.detector_audit import (
    JudgeViolationDetector,
    RulesDetector,
    audit_detector,
    confusion_of,
)
from tools.judges.labelled import (
    LabelledProbeError,
    LabelledSet,
    PairProbe,
    ScoreProbe,
    ViolationProbe,
    bundled_probes,
    read_labelled,
)
from tools.judges.labelled_audit import NEUTRAL_CLOSERS, NEUTRAL_OPENERS, audit_labelled, pad_neutral
from tools.worlds.tiny.detectors import PADDED_MARKERS

CONSTITUTION = parse_constitution(default_constitution_yaml(), "default")
ROOT = Path(__file__).resolve().parent.parent


def jsonl(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def parquet(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(list(rows)), path)
    return path


class ScriptedScores:
    """A pointwise judge with scores looked up by response text (unknown text: invalid)."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [Verdict(self.scores[it.response], True, it.response) if it.response in self.scores
                else Verdict.invalid(it.response, "unknown") for it in items]

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        from tools.judges.base import compare_by_scores
        return compare_by_scores(self, items)


class FirstSlot:
    """A pairwise-only judge that always picks whichever answer it is shown first."""

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        return [combine_orders("a", "a", ("a", "a")) for _ in items]


# -- reading ---------------------------------------------------------------------------------------

def test_reads_pairwise_jsonl_with_defaults(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "p.jsonl", [
        {"prompt": "2+2?", "response_a": "4", "response_b": "5", "better": "A", "category": "math", "extra": 1},
        "",
        {"prompt": "hi", "response_a": "hello", "response_b": "hey", "better": " tie "},
    ])
    got = read_labelled(path)
    assert got.kind == "pairwise" and not got.rewardbench and len(got) == 2
    assert got.pairs()[0] == PairProbe("2+2?", "4", "5", "a", "math", f"{path} line 1")
    assert got.pairs()[1].better == "tie" and got.pairs()[1].category == "uncategorised"
    assert got.pairs()[1].where.endswith("line 3")  # the blank line still counts
    assert got.categories() == {"math": 1, "uncategorised": 1} and len(got.sha256) == 64


def test_reads_csv_with_quoted_newlines_and_counts_lines(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text('prompt,response,violates,invariant,category\n'
                    '"How, exactly?","line one\nline two",true,no-abuse,x\n'
                    'q2,r2,0,,\n', encoding="utf-8")
    got = read_labelled(path)
    assert got.kind == "violation"
    first, second = got.violations()
    assert first == ViolationProbe("How, exactly?", "line one\nline two", True, "no-abuse", "x", f"{path} line 2")
    assert second.violates is False and second.invariant is None and second.where.endswith("line 4")


def test_reads_pointwise_parquet(tmp_path: Path) -> None:
    path = parquet(tmp_path / "s.parquet", [{"prompt": "p", "response": "r", "score": 0.25, "category": "c"},
                                            {"prompt": "q", "response": "s", "score": 1, "category": None}])
    got = read_labelled(path)
    assert got.kind == "pointwise"
    assert got.scores() == [ScoreProbe("p", "r", 0.25, "c", f"{path} row 1"),
                            ScoreProbe("q", "s", 1.0, "uncategorised", f"{path} row 2")]


def test_rewardbench_columns_put_chosen_in_a_seeded_slot(tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "subset": "alpacaeval-easy",
             "id": i, "chosen_model": "m"} for i in range(40)]
    path = parquet(tmp_path / "rb.parquet", rows)
    got = read_labelled(path, slot_seed=3)
    assert got.rewardbench and got.kind == "pairwise" and got.categories() == {"alpacaeval-easy": 40}
    for p in got.pairs():
        assert (p.a if p.better == "a" else p.b).startswith("good ")
        assert (p.b if p.better == "a" else p.a).startswith("bad ")
    slots = [p.better for p in got.pairs()]
    assert 5 < slots.count("a") < 35  # both slots used: position cannot pose as preference
    assert [p.better for p in read_labelled(path, slot_seed=3).pairs()] == slots  # deterministic
    assert [p.better for p in read_labelled(path, slot_seed=4).pairs()] != slots
    as_jsonl = read_labelled(jsonl(tmp_path / "rb.jsonl", rows), slot_seed=3)
    assert [p.better for p in as_jsonl.pairs()] == slots  # the format does not change the draw


def test_kind_can_be_named(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "v.jsonl", [{"prompt": "p", "response": "r", "violates": "no", "score": 1}])
    assert read_labelled(path).kind == "violation"
    with pytest.raises(LabelledProbeError, match="has no 'response_a', 'response_b', 'better'"):
        read_labelled(path, kind="pairwise")
    assert read_labelled(path, kind="pointwise").scores()[0].score == 1.0


@pytest.mark.parametrize(("rows", "where", "message"), [
    ([{"prompt": "p", "response_a": "a", "response_b": "b", "better": "a"},
      {"prompt": "p", "response_a": "a", "better": "b"}], "line 2", "has no 'response_b'"),
    ([{"prompt": "p", "response_a": "a", "response_b": "b", "better": "first"}], "line 1", "'better' is 'first'"),
    ([{"prompt": "p", "response": "r", "score": 1.5}], "line 1", "'score' is 1.5: write the known score"),
    ([{"prompt": "p", "response": "r", "violates": "maybe"}], "line 1", "'violates' is 'maybe'"),
    ([{"prompt": " ", "response": "r", "violates": True}], "line 1", "empty 'prompt'"),
    ([{"prompt": "p", "chosen": [{"role": "assistant", "content": "x"}], "rejected": "y"}], "line 1",
     "'chosen' is a list"),
    ([{"question": "p", "answer": "r"}], "line 1", "match no probe kind"),
    (["{not json"], "line 1", "is not JSON"),
    (["[1, 2]"], "line 1", "not an object"),
])
def test_bad_jsonl_names_file_line_and_fix(tmp_path: Path, rows: list[Any], where: str, message: str) -> None:
    path = jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(LabelledProbeError) as caught:
        read_labelled(path)
    text = str(caught.value)
    assert str(path) in text and where in text and message in text
    assert isinstance(caught.value, TetherError) and caught.value.exit_code == EXIT_USAGE


def test_bad_csv_and_parquet_name_line_or_row(tmp_path: Path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("prompt,response,violates\np,r,true\np,r,true,extra\n", encoding="utf-8")
    with pytest.raises(LabelledProbeError, match=r"bad\.csv line 3 has 4 fields"):
        read_labelled(csv_path)
    pq_path = parquet(tmp_path / "bad.parquet", [{"prompt": "p", "response": "r", "violates": True},
                                                 {"prompt": "p", "response": "r", "violates": None}])
    with pytest.raises(LabelledProbeError, match=r"bad\.parquet row 2 has no 'violates'"):
        read_labelled(pq_path)
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    with pytest.raises(LabelledProbeError, match="not a Parquet file"):
        read_labelled(fake)


def test_files_that_cannot_be_probes(tmp_path: Path) -> None:
    with pytest.raises(LabelledProbeError, match="does not exist"):
        read_labelled(tmp_path / "missing.jsonl")
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(LabelledProbeError, match=r"\.jsonl, \.csv, \.parquet"):
        read_labelled(tmp_path / "p.txt")
    with pytest.raises(LabelledProbeError, match="holds no probes"):
        read_labelled(jsonl(tmp_path / "empty.jsonl", ["", "  "]))
    long = jsonl(tmp_path / "long.jsonl", [{"prompt": "p" * 500, "response": "r", "violates": True}])
    with pytest.raises(LabelledProbeError, match="line 1 is longer than the 100 bytes"):
        read_labelled(long, limits=InputLimits(line_bytes=100))
    big = parquet(tmp_path / "long.parquet", [{"prompt": "p" * 500, "response": "r", "violates": True}])
    with pytest.raises(LabelledProbeError, match="row 1 is .* bytes, over the 100"):
        read_labelled(big, limits=InputLimits(line_bytes=100))


# -- calibration -----------------------------------------------------------------------------------

def test_ece_is_zero_when_calibrated_and_the_gap_when_overconfident() -> None:
    calibrated = calibration([0.8] * 10 + [0.3] * 10, [1] * 8 + [0] * 2 + [1] * 3 + [0] * 7)
    assert calibrated.ece == pytest.approx(0.0, abs=1e-12)
    assert sum(b.count for b in calibrated.bins) == 20 and len(calibrated.bins) == 10
    always_sure = calibration([0.9] * 10, [1] * 5 + [0] * 5)
    assert always_sure.ece == pytest.approx(0.4)
    # Two bins: 4 at 0.95 right half the time, 6 at 0.65 always right: 0.4 * 0.45 + 0.6 * 0.35.
    two = calibration([0.95] * 4 + [0.65] * 6, [1, 0, 1, 0] + [1] * 6, lo=0.5)
    assert two.ece == pytest.approx(0.39)
    assert [b.count for b in two.bins if b.count] == [6, 4]
    assert calibration([1.0, 0.0], [1, 0]).ece == pytest.approx(0.0)  # the edges land in the end bins
    with pytest.raises(ValueError):
        calibration([0.4], [1], lo=0.5)


def test_pair_audit_ece_from_score_margins(tmp_path: Path) -> None:
    """Ten pairs the judge scores 0.9 vs 0.1 (confidence 0.9), right on five: ECE 0.4."""
    probes = tuple(PairProbe(f"q{i}", f"a{i}", f"b{i}", "a" if i < 5 else "b", "c", f"row {i}") for i in range(10))
    judge = ScriptedScores({**{f"a{i}": 0.9 for i in range(10)}, **{f"b{i}": 0.1 for i in range(10)}})
    result = audit_labelled(judge, LabelledSet("pairwise", "scripted", "", probes))
    assert result.report.measure("ece").value == pytest.approx(0.4)
    assert result.report.measure("ece").flagged is True
    assert result.report.measure("accuracy").value == pytest.approx(0.5)
    # Padded answers were never scored: their verdicts are invalid, and counted as such.
    assert result.report.measure("invalid_rate").value == pytest.approx(10 / 20)
    png = result.plot(tmp_path / "out" / "reliability.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result.to_json())


def test_a_first_slot_judge_shows_position_bias_and_no_calibration() -> None:
    probes = tuple(PairProbe(f"q{i}", f"a{i}", f"b{i}", "ab"[i % 2], "c", f"row {i}")  # type: ignore[arg-type]
                   for i in range(8))
    report = audit_labelled(FirstSlot(), LabelledSet("pairwise", "scripted", "", probes)).report
    assert report.measure("position_bias").value == 1.0 and report.measure("position_bias").flagged
    assert report.measure("accuracy").value == 0.0  # every flip is a tie, and no pair is labelled a tie
    assert report.measure("ece").value is None and "no pointwise scores" in report.measure("ece").note


def test_a_pairwise_judge_that_also_scores_is_calibrated_on_its_scores() -> None:
    """Its verdicts carry no scores, so the margin comes from scoring both answers: 0.75 vs 0.25
    (confidence 0.75) on eight pairs, right on six: calibrated, ECE 0."""

    class PicksAAndScores(ScriptedScores):
        def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
            return [combine_orders("a", "b", ("a", "b")) for _ in items]

    probes = tuple(PairProbe(f"q{i}", f"a{i}", f"b{i}", "a" if i < 6 else "b", "c", f"row {i}") for i in range(8))
    judge = PicksAAndScores({**{f"a{i}": 0.75 for i in range(8)}, **{f"b{i}": 0.25 for i in range(8)}})
    result = audit_labelled(judge, LabelledSet("pairwise", "scripted", "", probes))
    assert result.calibration is not None and result.calibration.n == 8
    assert result.report.measure("ece").value == pytest.approx(0.0, abs=1e-12)
    assert result.report.measure("accuracy").value == pytest.approx(6 / 8)


def test_pointwise_audit_of_a_judge_that_knows_the_labels(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "response": f"r{i}", "score": i / 9, "category": "ab"[i % 2]} for i in range(10)]
    labelled = read_labelled(parquet(tmp_path / "s.parquet", rows))
    oracle = ScriptedScores({r["response"]: r["score"] for r in rows})
    report = audit_labelled(oracle, labelled).report
    assert report.measure("accuracy").value == 1.0 and report.measure("mae").value == pytest.approx(0.0)
    assert report.measure("spearman").value == pytest.approx(1.0)
    assert report.measure("ece").value == pytest.approx(0.0, abs=1e-12)
    assert report.measure("accuracy[a]").n + report.measure("accuracy[b]").n == report.measure("accuracy").n


# -- the bundled probes ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs() -> LabelledSet:
    return read_labelled(bundled_probes("pairwise"))


@pytest.fixture(scope="module")
def violations() -> LabelledSet:
    return read_labelled(bundled_probes("violation"))


def test_bundled_files_are_what_the_script_writes_and_ship(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as `python scripts/...` has it: the templates beside it
    spec = importlib.util.spec_from_file_location("make_labelled_probes", ROOT / "scripts" / "make_labelled_probes.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.write(script.pairwise(random.Random(f"{script.SEED}/pairwise")), tmp_path / "pairwise.jsonl")
    script.write(script.violations(random.Random(f"{script.SEED}/violation")), tmp_path / "violation.jsonl")
    for kind in ("pairwise", "violation"):
        assert (tmp_path / f"{kind}.jsonl").read_bytes() == bundled_probes(kind).read_bytes(), \
            f"{kind}.jsonl differs from its templates: run scripts/make_labelled_probes.py"
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tools.judges"]
    shipped = {p for g in globs for p in (ROOT / "tools" / "judges").glob(g)}
    assert {bundled_probes("pairwise"), bundled_probes("violation")} <= shipped


def test_bundled_sets_are_large_and_mixed(pairs: LabelledSet, violations: LabelledSet) -> None:
    assert pairs.kind == "pairwise" and len(pairs) >= 200
    assert violations.kind == "violation" and len(violations) >= 200
    slots = [p.better for p in pairs.pairs()]
    assert min(slots.count("a"), slots.count("b")) > len(slots) // 4  # the better answer is in both slots
    labels = [p.violates for p in violations.violations()]
    assert min(labels.count(True), labels.count(False)) > len(labels) // 4
    assert {p.invariant for p in violations.violations()} <= {inv.id for inv in CONSTITUTION.invariants}


def test_neutral_padding_is_longer_and_names_no_penalised_phrase() -> None:
    filler = [ph for p in CONSTITUTION.principles if p.rule and p.rule.kind == "filler" for ph in p.rule.phrases]
    for piece in (*NEUTRAL_OPENERS, *NEUTRAL_CLOSERS):
        low = piece.lower()
        assert not any(ph in low for ph in (*filler, *PADDED_MARKERS)), piece
        defs = CONSTITUTION.definitions
        assert not (defs.is_refusal(piece) or defs.is_abusive(piece)), piece
    assert len(pad_neutral("Canberra.", random.Random(0)).split()) > 3


def test_rules_and_length_biased_on_the_bundled_pairs(pairs: LabelledSet) -> None:
    rules = audit_labelled(JUDGES.build("rules", constitution=CONSTITUTION).plugin, pairs, name="rules")
    biased = audit_labelled(JUDGES.build("length_biased").plugin, pairs, name="length_biased")
    for result in (rules, biased):
        report = result.report
        accuracy = report.measure("accuracy")
        assert accuracy.n == len(pairs) >= 200 and 0.0 <= (accuracy.value or 0.0) <= 1.0
        per_category = [m for m in report.measures if m.name.startswith("accuracy[")]
        assert sum(m.n for m in per_category) == accuracy.n
        assert sum((m.value or 0.0) * m.n for m in per_category) == pytest.approx(accuracy.value * accuracy.n)
        assert report.measure("invalid_rate").value == 0.0
        assert report.measure("position_bias").value == 0.0  # pointwise scores: order cannot matter
        cal = result.calibration
        assert cal is not None and cal.n == report.counts["calibrated"] > 0 and 0.0 <= (cal.ece or 0.0) <= 0.5
        json.dumps(result.to_json())
    # The keyword judge is weak on probes outside its vocabulary: flagged on accuracy.
    assert rules.report.measure("accuracy").flagged and rules.report.verdict == "fail"
    # It cannot tell a right number from a wrong one: a tie, which is never the labelled answer.
    assert rules.report.measure("accuracy[arithmetic]").value == 0.0
    # The padding carries no filler phrase: the rules judge is indifferent to it, the length-biased one is not.
    assert rules.report.measure("length_bias").value == pytest.approx(0.5)
    assert biased.report.measure("length_bias").value == 1.0 and biased.report.measure("length_bias").flagged
    assert "length_bias" not in rules.report.flagged
    # Longer wins for length_biased: it gets the concise-vs-filler pairs wrong every time.
    assert biased.report.measure("accuracy[concise]").value == 0.0


def test_keyword_detectors_miss_violations_on_the_bundled_probes(violations: LabelledSet) -> None:
    result = audit_detector(RulesDetector(CONSTITUTION), violations, name="rules")
    total = confusion_of(result)
    positives = sum(p.violates for p in violations.violations())
    assert total.tp + total.fn == positives and total.fp + total.tn == len(violations) - positives
    assert total.n == len(violations) and total.invalid == 0
    recall = result.report.measure("recall")
    assert recall.value == pytest.approx(total.tp / positives) and recall.n == positives
    assert recall.value is not None and 0.0 < recall.value < 1.0 and recall.flagged
    assert result.report.measure("false_positive_rate").value == pytest.approx(total.fp / (total.fp + total.tn))
    groups = result.details["confusion"]
    for prefix in ("invariant:", "category:"):  # each probe is in one group of each kind
        parts = [confusion_of(result, g) for g in groups if g.startswith(prefix)]
        assert sum(c.tp for c in parts) == total.tp and sum(c.fn for c in parts) == total.fn
        assert sum(c.fp for c in parts) == total.fp and sum(c.tn for c in parts) == total.tn
    # Paraphrased refusals of requests the markers do recognise are flagged as compliance.
    assert confusion_of(result, "category:harm_paraphrased_refusal").fp > 0
    assert result.report.measure("recall[invariant:no-abuse]").value < 1.0


def test_judge_detector_counts_invalid_judgments_as_violations(violations: LabelledSet) -> None:
    result = audit_detector(JudgeViolationDetector(ScriptedScores({}), violation_below=0.5), violations,
                            name="broken")
    total = confusion_of(result)
    assert total.invalid == len(violations) and total.fn == 0 and total.tn == 0  # fail closed
    assert result.report.measure("invalid_rate").value == 1.0 and result.report.measure("invalid_rate").flagged
    assert "at threshold 0.5" in result.report.measure("recall").note


def test_probes_and_audits_must_match(tmp_path: Path, pairs: LabelledSet, violations: LabelledSet) -> None:
    with pytest.raises(LabelledProbeError, match="audit an invariant detector"):
        audit_labelled(JUDGES.build("length_biased").plugin, violations)
    with pytest.raises(LabelledProbeError, match="needs violation probes"):
        audit_detector(RulesDetector(CONSTITUTION), pairs)
    unknown = read_labelled(jsonl(tmp_path / "v.jsonl", [
        {"prompt": "p", "response": "r", "violates": True, "invariant": "no-lies"}]))
    with pytest.raises(LabelledProbeError, match=r"v\.jsonl line 1 names invariant 'no-lies'"):
        audit_detector(RulesDetector(CONSTITUTION), unknown)
