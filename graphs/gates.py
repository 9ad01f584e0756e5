"""Quality gates: pure functions of the evaluation's numbers and the job's thresholds."""

from __future__ import annotations

from typing import Any

from graphs.spec import Gates


def check_gates(base: dict[str, Any], tuned: dict[str, Any], gates: Gates) -> list[dict[str, Any]]:
    """One result per gate: {name, passed, value, threshold, detail}."""
    results = []
    if base.get("answer_nll") is not None and tuned.get("answer_nll") is not None:
        improvement = 1 - tuned["answer_nll"] / base["answer_nll"]
        results.append({
            "name": "answer_nll", "passed": improvement >= gates.min_nll_improvement,
            "value": round(improvement, 4), "threshold": gates.min_nll_improvement,
            "detail": f"tuned answer NLL {tuned['answer_nll']:.3f} vs base {base['answer_nll']:.3f} "
                      f"({improvement:+.1%}; needs at least {gates.min_nll_improvement:.0%} lower)"})
    else:
        results.append({"name": "answer_nll", "passed": False, "value": None,
                        "threshold": gates.min_nll_improvement, "detail": "no held-out examples to measure"})
    if base.get("general_perplexity") and tuned.get("general_perplexity"):
        increase = tuned["general_perplexity"] / base["general_perplexity"] - 1
        results.append({
            "name": "general_perplexity", "passed": increase <= gates.max_general_ppl_increase,
            "value": round(increase, 4), "threshold": gates.max_general_ppl_increase,
            "detail": f"general perplexity {tuned['general_perplexity']:.2f} vs base "
                      f"{base['general_perplexity']:.2f} ({increase:+.1%}; at most "
                      f"{gates.max_general_ppl_increase:+.0%})"})
    if grounding := grounding_gate(base, tuned, gates):
        results.append(grounding)
    return results


def grounding_gate(base: dict[str, Any], tuned: dict[str, Any], gates: Gates) -> dict[str, Any] | None:
    """answer_rouge_l: the tuned answers' ROUGE-L against the references at most `max_rouge_l_drop` below
    the base model's (and at least `min_rouge_l` when that is set). None (not judged) when fewer than
    `min_rouge_l_answers` answers were generated: a mean over a handful of answers is noise, and a run
    that generated nothing (generate_limit 0, no held-out examples) has nothing to judge."""
    generated = min(base.get("generated") or 0, tuned.get("generated") or 0)
    if generated < gates.min_rouge_l_answers or base.get("rouge_l") is None or tuned.get("rouge_l") is None:
        return None
    floor = max(base["rouge_l"] - gates.max_rouge_l_drop, gates.min_rouge_l)
    return {"name": "answer_rouge_l", "passed": tuned["rouge_l"] >= floor, "value": round(tuned["rouge_l"], 4),
            "threshold": round(floor, 4),
            "detail": f"tuned answers' ROUGE-L vs the references {tuned['rouge_l']:.3f}, base {base['rouge_l']:.3f} "
                      f"on {generated} answers (needs at least {floor:.3f}: at most {gates.max_rouge_l_drop:.2f} "
                      f"below base" + (f", and at least {gates.min_rouge_l:.2f}" if gates.min_rouge_l else "") + ")"}


def judge_gates(judge: dict[str, Any], gates: Gates) -> list[dict[str, Any]]:
    """The LLM-judge gate, when it is on (min_judge_win_rate > 0) and the judge compared tuned with base on
    at least one example; no result otherwise (an absent or failed judge neither passes nor fails a job)."""
    pairs = judge.get("pairwise")
    if gates.min_judge_win_rate <= 0 or not pairs:
        return []
    rate = pairs["win_rate"]
    return [{"name": "judge_win_rate", "passed": rate >= gates.min_judge_win_rate, "value": rate,
             "threshold": gates.min_judge_win_rate,
             "detail": f"the judge preferred tuned in {pairs['wins']} of {pairs['pairs']} examples, tied "
                       f"{pairs['ties']} (win rate {rate:.0%}, ties half; needs at least "
                       f"{gates.min_judge_win_rate:.0%})"}]
