"""The token budget: every request fits, the newest message is verbatim, summaries are reused."""
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import utils
from utils import Budget, MessageTooLarge, assemble_context

SYSTEM = "You are a helpful assistant."


def text_of(tokens: int) -> str:
    """A string of exactly `tokens` tokens (checked below)."""
    return " a" * tokens


def make_history(sizes, ids=None):
    ids = ids or itertools.count()
    history = []
    for index, size in enumerate(sizes):
        role = "user" if index % 2 == 0 else "assistant"
        content = text_of(size)
        history.append({"message_id": f"m{next(ids)}", "role": role, "content": content,
                        "tokens": size + 1 + utils.PER_MESSAGE_OVERHEAD})
    return history


class RecordingSummariser:
    def __init__(self, size=40, fail=False):
        self.calls, self.inputs, self.size, self.fail = 0, [], size, fail

    def __call__(self, text, max_tokens):
        self.calls += 1
        self.inputs.append(utils.count_tokens(text))
        if self.fail:
            raise RuntimeError("summariser down")
        return "summary" + text_of(min(self.size, max_tokens))


def test_budget_text_of_is_exact():
    assert [utils.count_tokens(text_of(n)) for n in (0, 1, 7, 500)] == [0, 1, 7, 500]
    assert utils.message_tokens("user", text_of(10)) == 10 + 1 + utils.PER_MESSAGE_OVERHEAD


@pytest.mark.parametrize("text", ["", "user", "You are a helpful assistant. " * 100,
                                  "a" * utils.CACHED_COUNT_CHARS, "é🙂 " * 3000, "<|endoftext|> hi"])
def test_budget_count_tokens_is_the_encoders_count_remembered_or_not(text):
    """Short texts are counted once and remembered (a turn counts the same ones again); long ones
    each time; both give the encoder's own count."""
    expected = len(utils.encoding().encode(text, disallowed_special=()))
    assert utils.count_tokens(text) == expected and utils.count_tokens(text) == expected  # counted, then remembered


def test_budget_small_history_is_sent_whole_without_summarising():
    history = make_history([10, 20, 30])
    summariser = RecordingSummariser()
    plan = assemble_context(history, None, SYSTEM, Budget(4096, 800), summariser)
    assert summariser.calls == 0 and not plan.summary_changed
    assert [m["content"] for m in plan.messages[1:]] == [m["content"] for m in history]
    assert plan.prompt_tokens == utils.request_tokens(plan.messages)


def test_budget_overflow_is_summarised_and_checkpointed():
    history = make_history([300] * 12)  # overflow fits one summariser call
    summariser = RecordingSummariser()
    budget = Budget(4096, 800)
    plan = assemble_context(history, None, SYSTEM, budget, summariser)
    assert summariser.calls == 1 and plan.summary_changed
    assert plan.summary["last_message_id"] == plan.compacted_ids[-1]
    assert plan.messages[1]["content"].startswith(utils.SUMMARY_PREFIX)
    first_kept = plan.messages[2]
    assert first_kept["role"] == "user"  # cut at a user-turn boundary
    assert utils.request_tokens(plan.messages) + budget.reply_tokens <= budget.context_window
    again = assemble_context(history, plan.summary, SYSTEM, budget, summariser)
    assert summariser.calls == 1 and not again.summary_changed  # checkpoint reused, no new call


def test_budget_a_new_summary_too_big_to_send_with_a_huge_message_is_still_kept():
    """Found by hypothesis: the summary is made, then dropped to fit the newest message."""
    budget = Budget(4096, 800)
    fixed = utils.message_tokens("system", SYSTEM) + utils.REPLY_PRIMING
    newest = budget.prompt_room - fixed - 60  # fits alone, not with a 100-token summary
    history = make_history([300] * 4 + [newest - 1 - utils.PER_MESSAGE_OVERHEAD])
    summariser = RecordingSummariser(size=100)
    plan = assemble_context(history, None, SYSTEM, budget, summariser)
    assert summariser.calls == 1 and plan.summary_changed
    assert plan.summary is None and plan.messages[-1]["content"] == history[-1]["content"]
    assert plan.new_summary["last_message_id"] == plan.compacted_ids[-1]
    assert utils.request_tokens(plan.messages) + budget.reply_tokens <= budget.context_window


def test_budget_message_larger_than_window_is_a_clear_error():
    with pytest.raises(MessageTooLarge) as raised:
        assemble_context(make_history([5000]), None, SYSTEM, Budget(4096, 800), RecordingSummariser())
    assert "5004 tokens" in str(raised.value) and "upload it as a file" in str(raised.value)


def test_budget_summariser_failure_drops_oldest_and_tells_the_user():
    history = make_history([300] * 20)
    budget = Budget(4096, 800)
    plan = assemble_context(history, None, SYSTEM, budget, RecordingSummariser(fail=True))
    assert plan.notice and "still saved" in plan.notice and plan.dropped_messages > 0
    assert not plan.summary_changed and plan.summary is None
    assert plan.messages[-1]["content"] == history[-1]["content"]
    assert utils.request_tokens(plan.messages) + budget.reply_tokens <= budget.context_window


def test_budget_huge_overflow_is_summarised_recursively():
    history = make_history([3000] * 40)  # 120k tokens of overflow, summariser window 4096
    summariser = RecordingSummariser(size=200)
    budget = Budget(16000, 800)
    plan = assemble_context(history, None, SYSTEM, budget, summariser, summariser_window=4096)
    assert summariser.calls > 2
    assert max(summariser.inputs) <= 4096 - budget.summary_cap()
    assert utils.request_tokens(plan.messages) + budget.reply_tokens <= budget.context_window


def test_budget_calibration_ratio_shrinks_the_room():
    history = make_history([100] * 30)
    plain = assemble_context(history, None, SYSTEM, Budget(4096, 800), RecordingSummariser())
    calibrated = assemble_context(history, None, SYSTEM, Budget(4096, 800, ratio=1.5), RecordingSummariser())
    assert calibrated.prompt_tokens * 1.5 <= 4096 - 800
    assert calibrated.prompt_tokens < plain.prompt_tokens


def test_budget_300_turns_summarises_only_on_overflowing_turns():
    budget, summariser = Budget(4096, 800), RecordingSummariser()
    history, summary, ids, overflowing_turns = [], None, itertools.count(), 0
    for _turn in range(300):
        history += make_history([60], ids)
        before = summariser.calls
        plan = assemble_context(history, summary, SYSTEM, budget, summariser)
        overflowed = bool(plan.compacted_ids)
        overflowing_turns += overflowed
        assert summariser.calls - before == (1 if overflowed else 0)
        summary = plan.new_summary or summary
        history += [{"message_id": f"m{next(ids)}", "role": "assistant", "content": text_of(60),
                     "tokens": 64}]
    assert 0 < summariser.calls == overflowing_turns <= 20


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 20_000), min_size=1, max_size=2_000),
       window=st.integers(512, 200_000), reply_share=st.floats(0.01, 0.9),
       summary_tokens=st.integers(16, 2000), fails=st.booleans(), ratio=st.floats(0.8, 1.6))
def test_budget_property_every_request_fits(sizes, window, reply_share, summary_tokens, fails, ratio):
    budget = Budget(window, max(1, int(window * reply_share)), summary_tokens=summary_tokens, ratio=ratio)
    history = make_history(sizes)
    newest = history[-1]
    newest["role"] = "user"
    stored = [dict(m) for m in history]
    try:
        plan = assemble_context(history, None, SYSTEM, budget, RecordingSummariser(fail=fails))
    except MessageTooLarge:
        assert utils.message_tokens("system", SYSTEM) + newest["tokens"] + utils.REPLY_PRIMING > budget.prompt_room
        return
    counted = utils.request_tokens(plan.messages)
    assert counted == plan.prompt_tokens
    assert counted * ratio + budget.reply_tokens <= window
    assert plan.messages[-1] == {"role": newest["role"], "content": newest["content"]}
    assert history == stored  # the history itself is never modified
