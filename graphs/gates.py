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
    if gates.min_rouge_l > 0 and tuned.get("rouge_l") is not None:
        results.append({
            "name": "answer_rouge_l", "passed": tuned["rouge_l"] >= gates.min_rouge_l,
            "value": round(tuned["rouge_l"], 4), "threshold": gates.min_rouge_l,
            "detail": f"tuned answers' ROUGE-L vs the references {tuned['rouge_l']:.3f} (base "
                      f"{base.get('rouge_l') or 0:.3f}; needs at least {gates.min_rouge_l:.2f})"})
    return results


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
