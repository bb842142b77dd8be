"""The meta-controller policy on scripted monitor histories: each trigger, each cool-down, the stop
conditions, and the advisor's validation. The policy is a pure function, so no model is needed."""

from __future__ import annotations

from collections.abc import Mapping

from agent.config import ControllerConfig
from agent.controller.advisor import parse_advice
from agent.controller.policy import Advice, Check, ControllerInput, RoundSignals, decide
from tether_types import SAFETY_KEYS, MonitorKey

K = MonitorKey
CFG = ControllerConfig(rounds=20)
HEALTHY = {K.LENGTH_SCORE_CORR: 0.1, K.POSITION_CONSISTENCY: 1.0, K.INVALID_SHARE: 0.0, K.PROMPT_REUSE: 0.0,
           K.PROMPT_EMBEDDING_DISPERSION: 0.6, K.MARGIN_MEAN: 0.5, K.OVER_REFUSAL: 0.05}


def rnd(n: int, action: str | None = None, outcome: str | None = None, judge: str = "j0", pairs: int = 20,
        missing: tuple[MonitorKey, ...] = (), could_not_check: Mapping[MonitorKey, str] | None = None,
        **monitors: float) -> RoundSignals:
    """A round with healthy monitors, some overridden by keyword; `missing` keys have no value at all."""
    values = {k: v for k, v in {**HEALTHY, **{K(k): v for k, v in monitors.items()}}.items() if k not in missing}
    return RoundSignals(round=n, pairs=pairs, monitors=values, could_not_check=dict(could_not_check or {}),
                        judge=judge, action=action, outcome=outcome)


def inp(now: RoundSignals, past: list[RoundSignals] | None = None, heldout: list[tuple[int, float]] | None = None,
        **kw: object) -> ControllerInput:
    return ControllerInput(now=now, budget=20, past=tuple(past or ()), heldout=tuple(heldout or ()), **kw)  # type: ignore[arg-type]


def fired(decision_checks: tuple, signal: str) -> bool:
    return any(c.signal == signal and c.fired for c in decision_checks)


def trained(n: int) -> list[RoundSignals]:
    return [rnd(i, "train", "approved") for i in range(1, n + 1)]


def rising(n: int) -> list[tuple[int, float]]:
    return [(i, 0.3 + 0.1 * i) for i in range(n + 1)]


def test_healthy_round_trains_and_logs_every_check() -> None:
    d = decide(inp(rnd(1)), CFG)
    assert d.action == "train"
    signals = {c.signal for c in d.checks}
    assert {"length_score_corr", "position_consistency", "invalid_share", "prompt_reuse"} <= signals
    assert not any(c.fired for c in d.checks)
    assert d.log_signals()["checks"][0].keys() >= {"signal", "value", "op", "threshold", "fired"}


def test_budget_spent_stops() -> None:
    d = decide(ControllerInput(now=RoundSignals(round=21, pairs=None), budget=20), CFG)
    assert d.action == "stop" and "budget" in d.rationale


def test_length_biased_judge_is_left_for_the_next_in_the_pool() -> None:
    d = decide(inp(rnd(1, length_score_corr=0.93), next_judge="rules"), CFG)
    assert d.action == "switch_judge"
    assert d.signals["switch"] == {"from": "j0", "to": "rules", "why": "length_score_corr 0.93 > 0.6"}
    assert fired(d.checks, "length_score_corr")


def test_position_inconsistent_judge_is_left() -> None:
    d = decide(inp(rnd(1, position_consistency=0.4), next_judge="jury"), CFG)
    assert d.action == "switch_judge" and "position_consistency 0.4 < 0.7" in d.rationale


def test_unreliable_judge_without_an_alternative_stops() -> None:
    assert decide(inp(rnd(1, length_score_corr=0.9)), CFG).action == "stop"
    off = CFG.model_copy(update={"interventions": []})
    d = decide(inp(rnd(1, length_score_corr=0.9), next_judge="rules"), off)
    assert d.action == "train" and "switch_judge is off" in d.signals["warnings"][0]  # the fixed recipe


def test_invalid_judgments_skip_then_switch_after_invalid_rounds() -> None:
    first = decide(inp(rnd(2, invalid_share=0.5), past=trained(1), next_judge="rules"), CFG)
    assert first.action == "skip"
    second = decide(inp(rnd(2, invalid_share=0.5), past=[rnd(1, "skip", invalid_share=0.6)], next_judge="rules"), CFG)
    assert second.action == "switch_judge"
    # Invalid rounds of another judge do not count towards this one's streak.
    other = decide(inp(rnd(2, invalid_share=0.5), past=[rnd(1, "skip", judge="old", invalid_share=0.6)],
                       next_judge="rules"), CFG)
    assert other.action == "skip"
    assert decide(inp(rnd(2, invalid_share=0.5), past=[rnd(1, "skip", invalid_share=0.6)]), CFG).action == "skip"


def test_saturated_pool_regenerates_with_max_repeats_and_cooldown() -> None:
    sat = {"prompt_reuse": 0.8}
    assert decide(inp(rnd(3, **sat), past=trained(2)), CFG).action == "regenerate_prompts"
    past = [*trained(2), rnd(3, "regenerate_prompts", **sat), rnd(4, "regenerate_prompts", **sat)]
    held = decide(inp(rnd(5, **sat), past=past), CFG)
    assert held.action == "train" and "max_repeats=2" in held.signals["held_back"]["regenerate_prompts"]
    past += [rnd(5, "train", "approved", **sat)]
    cooling = decide(inp(rnd(6, **sat), past=past), CFG)
    assert cooling.action == "train" and "cooling down" in cooling.signals["held_back"]["regenerate_prompts"]
    past += [rnd(6, "train", "approved", **sat)]
    assert decide(inp(rnd(7, **sat), past=past), CFG).action == "regenerate_prompts"  # rested cooldown=2 rounds


def test_low_prompt_dispersion_and_margin_collapse_are_saturation() -> None:
    assert decide(inp(rnd(2, prompt_embedding_dispersion=0.05), past=trained(1)), CFG).action == "regenerate_prompts"
    past = [rnd(1, "train", "approved", margin_mean=0.8), rnd(2, "train", "approved", margin_mean=0.6)]
    falling = decide(inp(rnd(3, margin_mean=0.2, prompt_reuse=0.45), past=past), CFG)
    assert falling.action == "train"  # margins fall but the pool is mostly fresh: not saturation
    cfg = CFG.model_copy(update={"regenerate_prompts": CFG.regenerate_prompts.model_copy(
        update={"max_prompt_reuse": 0.9})})
    collapsed = decide(inp(rnd(3, margin_mean=0.2, prompt_reuse=0.6), past=past), cfg)
    assert collapsed.action == "regenerate_prompts" and fired(collapsed.checks, "margin_drop")


def test_one_round_of_invalid_judgments_is_skipped_with_the_reason() -> None:
    skipped = decide(inp(rnd(1, invalid_share=0.5)), CFG)
    assert skipped.action == "skip" and "max_invalid_share=20%" in skipped.rationale
    assert skipped.signals["monitor.invalid_share"] == 0.5
    assert decide(inp(rnd(1, invalid_share=0.2)), CFG).action == "train"


def test_too_few_pairs_regenerates_else_stops() -> None:
    off = CFG.model_copy(update={"interventions": [], "min_pairs": 2})
    starved = decide(inp(rnd(1, pairs=1)), off)
    assert starved.action == "stop" and "min_pairs=2" in starved.rationale and starved.signals["pairs"] == 1
    assert decide(inp(rnd(2, pairs=0), past=trained(1)), CFG).action == "regenerate_prompts"
    past = [rnd(1, "regenerate_prompts"), rnd(2, "regenerate_prompts")]
    d = decide(inp(rnd(3, pairs=0), past=past), CFG)
    assert d.action == "stop" and "min_pairs" in d.rationale


def test_heldout_plateau_adds_an_adversarial_curriculum_then_regenerates() -> None:
    flat = [(0, 0.5), (1, 0.6), (2, 0.605), (3, 0.61)]
    d = decide(inp(rnd(4), past=trained(3), heldout=flat, failures=7), CFG)
    assert d.action == "add_adversarial" and "7 recorded failure(s)" in d.rationale
    assert decide(inp(rnd(4), past=trained(3), heldout=rising(3), failures=7), CFG).action == "train"
    # Right after the curriculum nothing trained yet: it is not repeated, the run trains on it.
    past = [*trained(3), rnd(4, "add_adversarial")]
    assert decide(inp(rnd(5), past=past, heldout=flat, failures=7), CFG).action == "train"
    # Trained on it and still flat: the other plateau intervention is tried.
    past += [rnd(5, "train", "approved")]
    d = decide(inp(rnd(6), past=past, heldout=[*flat, (5, 0.612)], failures=7), CFG)
    assert d.action == "regenerate_prompts"


def test_no_failures_means_the_plateau_regenerates_prompts() -> None:
    flat = [(0, 0.5), (1, 0.6), (2, 0.6), (3, 0.6)]
    assert decide(inp(rnd(4), past=trained(3), heldout=flat, failures=0), CFG).action == "regenerate_prompts"


def test_stop_when_the_plateau_outlives_the_interventions() -> None:
    past = [*trained(2), rnd(3, "add_adversarial"), rnd(4, "train", "approved"), rnd(5, "regenerate_prompts"),
            rnd(6, "train", "approved")]
    curve = [(0, 0.4), (1, 0.6), (2, 0.6), (4, 0.61), (6, 0.6)]
    d = decide(inp(rnd(7), past=past, heldout=curve, failures=3), CFG)
    assert d.action == "stop" and "add_adversarial and regenerate_prompts were tried" in d.rationale
    # Not before a round has trained on the last intervention's prompts.
    fresh = [*trained(2), rnd(3, "add_adversarial"), rnd(4, "train", "approved"), rnd(5, "train", "approved"),
             rnd(6, "regenerate_prompts")]
    flat = [(0, 0.4), (1, 0.6), (2, 0.6), (4, 0.61), (5, 0.6)]
    assert decide(inp(rnd(7), past=fresh, heldout=flat, failures=3), CFG).action == "train"
    assert decide(inp(rnd(8), past=[*fresh, rnd(7, "train", "approved")], heldout=[*flat, (7, 0.6)], failures=3),
                  CFG).action == "stop"
    # Without the interventions tried, the plateau does not stop the run yet.
    assert decide(inp(rnd(7), past=trained(6), heldout=[(0, 0.4), (1, 0.6), (2, 0.6), (4, 0.61), (6, 0.6)],
                      failures=3), CFG).action == "add_adversarial"
    off = CFG.model_copy(update={"interventions": []})
    assert decide(inp(rnd(7), past=trained(6), heldout=curve), off).action == "train"  # runs its budget
    only_adversarial = CFG.model_copy(update={"interventions": ["add_adversarial"]})
    past = [*trained(2), rnd(3, "add_adversarial"), *[rnd(i, "train", "approved") for i in (4, 5, 6)]]
    assert decide(inp(rnd(7), past=past, heldout=curve, failures=3), only_adversarial).action == "stop"


def test_candidates_failing_invariants_in_a_row_stop() -> None:
    past = [rnd(1, "train", "approved"), rnd(2, "train", "failed_invariants"), rnd(3, "skip"),
            rnd(4, "train", "failed_invariants")]
    d = decide(inp(rnd(5), past=past), CFG)
    assert d.action == "stop" and "failed invariant" in d.rationale
    assert decide(inp(rnd(5), past=past[:3]), CFG).action == "train"


def test_over_refusal_proposes_an_amendment_after_patience() -> None:
    over = {"over_refusal": 0.5}
    once = decide(inp(rnd(2, **over), past=trained(1), amendment="principle 'helpful': weight 0.8 -> 1"), CFG)
    assert once.action == "train"
    d = decide(inp(rnd(2, **over), past=[rnd(1, "train", "approved", **over)], amendment="principle 'helpful'"), CFG)
    assert d.action == "propose_amendment" and "helpful" in d.rationale
    nothing = decide(inp(rnd(2, **over), past=[rnd(1, "train", "approved", **over)], amendment=None), CFG)
    assert nothing.action == "train"
    # the check fired and nothing acted: the rationale says why, never "no intervention is called for"
    held = decide(inp(rnd(2, **over), past=[rnd(1, "train", "approved", **over)], amendment=None,
                      amendment_held="this run's proposal ap-1 still waits for reviewers"), CFG)
    assert held.action == "train" and "no intervention is called for" not in held.rationale
    assert "over_refusal fired, but no amendment is proposed: this run's proposal ap-1 still waits" in held.rationale


def test_after_an_adopted_amendment_only_rounds_trained_under_it_count_toward_over_refusal() -> None:
    """Round 3 adopted an amendment (constitution_from=3) proposed in round 2 and trained under it. Rounds 1-3
    were sampled from policies the old constitution taught, so only round 4 on speaks for the new one: one
    round is short of patience 2, and no stronger draft is proposed on the old rounds."""
    over = {"over_refusal": 0.5}
    past = [rnd(1, "train", "approved", **over), rnd(2, "propose_amendment", "amendment_proposed", **over),
            rnd(3, "train", "approved", **over)]
    draft = "principle 'helpful': weight 0.8 -> 1"
    stale = decide(inp(rnd(4, **over), past=past, amendment=draft, constitution_from=3), CFG)
    assert stale.action == "train"
    # Round 4 trained under it too and still refuses: rounds 4 and 5 are evidence, and patience (2) is met.
    later = decide(inp(rnd(5, **over), past=[*past, rnd(4, "train", "approved", **over)], amendment=draft,
                       constitution_from=3), CFG)
    assert later.action == "propose_amendment"
    # A round 3 whose candidate was rejected left the old policy in place: round 4 is not evidence yet.
    rejected = [*past[:2], rnd(3, "train", "rejected", **over)]
    assert decide(inp(rnd(4, **over), past=rejected, amendment=draft, constitution_from=3), CFG).action == "train"
    # Without an adopted amendment every round counts, as before.
    assert decide(inp(rnd(4, **over), past=past, amendment=draft), CFG).action == "propose_amendment"


def test_interventions_in_a_row_are_capped() -> None:
    past = [rnd(1, "regenerate_prompts"), rnd(2, "add_adversarial"), rnd(3, "propose_amendment")]
    d = decide(inp(rnd(4, prompt_reuse=0.9), past=past), CFG)
    assert d.action == "train" and "max_interventions_in_a_row" in d.signals["held_back"]["regenerate_prompts"]
    # A judge found unreliable is still left: that rule is a safeguard, not a soft intervention.
    assert decide(inp(rnd(4, length_score_corr=0.9), past=past, next_judge="rules"), CFG).action == "switch_judge"


def test_interventions_off_only_train_skip_stop() -> None:
    off = CFG.model_copy(update={"interventions": []})
    monitors: Mapping[str, float] = {"prompt_reuse": 0.9, "over_refusal": 0.9}
    past = [rnd(1, "train", "approved", **monitors)]
    d = decide(inp(rnd(2, **monitors), past=past, heldout=[(0, 0.5), (1, 0.5)], failures=5, amendment="x"), off)
    assert d.action == "train"


def test_advisor_is_followed_only_within_the_permitted_actions() -> None:
    take = decide(inp(rnd(2), past=trained(1), advice=Advice("regenerate_prompts", "margins look thin")), CFG)
    assert take.action == "regenerate_prompts" and "margins look thin" in take.rationale
    no_failures = decide(inp(rnd(2), past=trained(1), advice=Advice("add_adversarial", "red-team it")), CFG)
    assert no_failures.action == "train" and "not permitted" in no_failures.signals["advice"]["overruled"]
    stop = decide(inp(rnd(2), past=trained(1), advice=Advice("stop", "enough")), CFG)
    assert stop.action == "train"
    unsafe = decide(inp(rnd(2, length_score_corr=0.95), past=trained(1), next_judge="rules",
                        advice=Advice("train", "the judge is fine")), CFG)
    assert unsafe.action == "switch_judge"  # safety rules come before the advisor
    # The advisor may overrule a soft trigger with training.
    soft = decide(inp(rnd(2, prompt_reuse=0.9), past=trained(1), advice=Advice("train", "pool is fine")), CFG)
    assert soft.action == "train" and "advised train" in soft.rationale


def test_parse_advice_is_strict() -> None:
    assert parse_advice("Action: add_adversarial\nReason: plateau", "m").action == "add_adversarial"
    assert parse_advice("action: TRAIN\nreason: fine", "m").action == "train"
    for bad in ("Action: stop\nReason: x", "Action: train\nAction: add_adversarial\nReason: x",
                "I think we should train", "Action: train"):
        assert parse_advice(bad, "m").action == ""


def test_advisor_asks_a_real_endpoint_and_fails_closed() -> None:
    from agent.config import AdvisorConfig
    from agent.controller.advisor import ask_advisor
    from conftest import serve_chat

    seen: list[str] = []

    def respond(prompt: str, max_tokens: int) -> str:
        seen.append(prompt)
        return "Action: add_adversarial\nReason: held-out has been flat for two rounds"

    server, url = serve_chat(respond)
    try:
        cfg = CFG.model_copy(update={"advisor": AdvisorConfig(model="m", base_url=url, timeout=5.0)})
        question = inp(rnd(4, prompt_reuse=0.2), past=trained(3), heldout=[(0, 0.5), (3, 0.6)], failures=4)
        advice = ask_advisor(cfg, question)
        assert advice.action == "add_adversarial" and "flat" in advice.reason
        assert "prompt_reuse: 0.200" in seen[0] and "Recorded failures to target: 4" in seen[0]
    finally:
        server.shutdown()
    down = CFG.model_copy(update={"advisor": AdvisorConfig(model="m", base_url="http://127.0.0.1:9/v1", timeout=1.0)})
    unreachable = ask_advisor(down, inp(rnd(2)))
    assert unreachable.action == "" and unreachable.reason.startswith("no advice")
    d = decide(inp(rnd(2), past=trained(1), advice=unreachable), CFG)
    assert d.action == "train" and d.signals["advice"]["overruled"].startswith("no advice")


# -- missing signals fail closed -------------------------------------------------------------------


def check(d, signal: str) -> Check:
    return next(c for c in d.checks if c.signal == signal)


def test_missing_length_score_corr_on_a_trainable_round_leaves_the_judge_or_stops() -> None:
    why = {K.LENGTH_SCORE_CORR: "monitor length failed: RuntimeError: boom"}
    d = decide(inp(rnd(1, missing=(K.LENGTH_SCORE_CORR,), could_not_check=why), next_judge="rules"), CFG)
    assert d.action == "switch_judge" and "cannot be shown reliable" in d.rationale
    c = check(d, "length_score_corr")
    assert c.status == "could_not_check" and c.fired and c.value is None
    assert c.reason == why[K.LENGTH_SCORE_CORR] and "could not be checked (monitor length failed" in d.rationale
    logged = next(c for c in d.log_signals()["checks"] if c["signal"] == "length_score_corr")
    assert logged["status"] == "could_not_check" and logged["fired"] and logged["reason"]
    assert d.signals["could_not_check"] == {"length_score_corr": why[K.LENGTH_SCORE_CORR]}
    stop = decide(inp(rnd(1, missing=(K.LENGTH_SCORE_CORR,))), CFG)  # no judge left
    assert stop.action == "stop" and "length_score_corr is not in round 1's monitors" in stop.rationale
    # A non-finite value is no value either.
    assert decide(inp(rnd(1, length_score_corr=float("nan"))), CFG).action == "stop"


def test_every_missing_safety_signal_keeps_a_trainable_round_from_training() -> None:
    off = CFG.model_copy(update={"interventions": []})
    for key in SAFETY_KEYS:
        d = decide(inp(rnd(1, missing=(key,)), next_judge="rules"), CFG)
        assert d.action in ("switch_judge", "skip") and check(d, key.value).status == "could_not_check", key
        # The fixed recipe trains on a judge it cannot vouch for, as on one it knows is biased, but says so;
        # a round whose invalid share could not be checked is never trained on.
        fixed = decide(inp(rnd(1, missing=(key,))), off)
        if key == K.INVALID_SHARE:
            assert fixed.action == "skip" and "invalid share could not be checked" in fixed.rationale
        else:
            assert fixed.action == "train" and "could not be checked" in fixed.signals["warnings"][0]


def test_a_missing_safety_signal_is_not_required_when_the_round_has_too_few_pairs() -> None:
    # No pairs: position consistency is undefined, and nothing would be trained on anyway.
    d = decide(inp(rnd(2, pairs=0, missing=(K.POSITION_CONSISTENCY,)), past=trained(1)), CFG)
    assert d.action == "regenerate_prompts"
    c = check(d, "position_consistency")
    assert c.status == "could_not_check" and not c.fired and "not required" in c.reason


def test_a_missing_non_safety_signal_does_not_fire_but_is_not_ok() -> None:
    d = decide(inp(rnd(1, missing=(K.PROMPT_REUSE, K.OVER_REFUSAL))), CFG)
    assert d.action == "train"
    for signal in ("prompt_reuse", "over_refusal"):
        c = check(d, signal)
        assert c.status == "could_not_check" and not c.fired
    assert all(c.status == "ok" for c in d.checks if c.signal in ("length_score_corr", "invalid_share"))


def test_a_past_round_without_invalid_share_counts_towards_the_invalid_streak() -> None:
    past = [rnd(1, "skip", missing=(K.INVALID_SHARE,))]
    assert decide(inp(rnd(2, invalid_share=0.5), past=past, next_judge="rules"), CFG).action == "switch_judge"


def test_invalid_share_skip_cannot_be_bypassed_by_interventions_off() -> None:
    off = CFG.model_copy(update={"interventions": []})
    # A co-firing position warning used to return before the invalid-share skip: the round trained.
    d = decide(inp(rnd(1, invalid_share=0.5, position_consistency=0.4), next_judge="rules"), off)
    assert d.action == "skip" and "max_invalid_share=20%" in d.rationale
    assert fired(d.checks, "position_consistency") and "switch_judge is off" in d.signals["warnings"][0]
    # The same with the streak of invalid rounds that would switch the judge, and with every warning at once.
    past = [rnd(1, "skip", invalid_share=0.6)]
    d = decide(inp(rnd(2, invalid_share=0.5, length_score_corr=0.9, position_consistency=0.4), past=past), off)
    assert d.action == "skip" and fired(d.checks, "invalid_rounds_in_a_row")
    # switch_judge allowed but blocked for want of a judge: still a skip, never a train.
    on = decide(inp(rnd(2, invalid_share=0.5, position_consistency=0.4), past=past), CFG)
    assert on.action == "skip" and "cannot be switched" in on.rationale
