"""The router: rules in order, one JSON log line per decision, the optional classifier."""
import json
import logging

import pytest

from agents.router import route

CONTRACT_MATH = ["What is 65 x 3.11?", "Calculate (42 * 2) / 6", "Solve 2x + 5 = 15", "What's the square root of 144?"]


@pytest.mark.parametrize("text", CONTRACT_MATH)
def test_seed_math_examples_go_to_math(text):
    decision = route(text)
    assert decision.agent == "math" and decision.rule == "math_pattern" and decision.matches


@pytest.mark.parametrize("text", ["How do I create an account?", "What are the payment methods available?",
                                  "How can I contact customer support?", "Tell me a joke"])
def test_ordinary_questions_go_to_chat(text):
    decision = route(text)
    assert decision.agent == "chat" and decision.rule == "default"


@pytest.mark.parametrize("text, agent, rest", [("/math 2+2", "math", "2+2"), ("/ASK what is in it?", "knowledge", "what is in it?"),
                                               ("/file summarise the risks", "file", "summarise the risks"),
                                               ("/chat What is 2 + 2?", "chat", "What is 2 + 2?")])
def test_commands_win_and_are_stripped(text, agent, rest):
    decision = route(text, document_names=["report.txt"])
    assert (decision.agent, decision.rule, decision.text) == (agent, "command", rest)


def test_unknown_command_is_just_text():
    assert route("/shrug whatever").agent == "chat"


def test_attachment_goes_to_the_file_agent():
    decision = route("What are the risks here?", attachment="doc-1")
    assert decision.agent == "file" and decision.rule == "attachment"


def test_questions_about_uploads_go_to_knowledge_only_when_there_are_uploads():
    question = "What does the uploaded document say about refunds?"
    assert route(question).agent == "chat"
    decision = route(question, document_names=["policy.txt"])
    assert decision.agent == "knowledge" and decision.rule == "about_uploads"


def test_mentioning_a_file_name_goes_to_knowledge():
    decision = route("Summarise handbook for me", document_names=["handbook.md"])
    assert decision.agent == "knowledge" and "handbook.md" in decision.matches


def test_classifier_only_runs_when_no_rule_matched():
    calls = []

    def classify(text):
        calls.append(text)
        return "knowledge"
    assert route("What is 2 + 2?", classify=classify).agent == "math" and calls == []
    decision = route("Anything about our refund rules?", document_names=["a.txt"], classify=classify)
    assert decision.agent == "knowledge" and decision.rule == "classifier" and len(calls) == 1


def test_classifier_failure_or_nonsense_falls_back_to_chat():
    def broken(text):
        raise RuntimeError("endpoint down")
    failed = route("hello", classify=broken)
    assert (failed.agent, failed.rule, failed.matches) == ("chat", "default", [])
    assert "failed or was empty" in failed.reasoning
    nonsense = route("hello", classify=lambda text: "Sure! This message is a greeting.")
    assert (nonsense.agent, nonsense.rule, nonsense.matches) == ("chat", "default", ["sure"])
    assert "'sure'" in nonsense.reasoning and "not math, knowledge or chat" in nonsense.reasoning
    no_uploads = route("hello", classify=lambda text: "knowledge")
    assert (no_uploads.agent, no_uploads.rule) == ("chat", "default") and "no uploads" in no_uploads.reasoning
    said_chat = route("hello", classify=lambda text: "Chat")
    assert (said_chat.agent, said_chat.rule, said_chat.matches) == ("chat", "classifier", ["chat"])


def test_each_decision_is_one_json_log_line_without_the_message(caplog):
    caplog.set_level(logging.INFO, logger="chat.router")
    route("What is 65 x 3.11?", log_fields={"conversation_id": "c1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "chat.router"]
    assert len(lines) == 1
    logged = json.loads(lines[0])
    assert logged["agent"] == "math" and logged["rule"] == "math_pattern" and logged["conversation_id"] == "c1"
    assert logged["reasoning"] and logged["execution_time_ms"] >= 0 and logged["message_chars"] == 18
    assert "65 x 3.11" not in lines[0]


def test_public_decision_has_no_text():
    assert set(route("hi").public()) == {"agent", "rule", "reasoning", "matches", "execution_time_ms"}


def test_model_classifier_asks_for_one_word_through_the_endpoint(tmp_path, fake_llm):
    from agents.providers import Providers
    from agents.router import model_classifier
    from config import TestConfig
    fake_llm.reply = "Knowledge."
    client = Providers(TestConfig(tmp_path, OPENAI_BASE_URL=fake_llm.url),
                       client_options={"max_retries": 0}).client("router")
    decision = route("Anything on refunds?", document_names=["a.txt"], classify=model_classifier(client))
    client.close()
    assert decision.agent == "knowledge" and decision.rule == "classifier"
    body = fake_llm.requests[-1].body
    assert body["max_tokens"] == 3 and body["messages"][-1]["content"] == "Anything on refunds?"


def test_model_classifier_empty_stream_falls_back_to_the_rules(tmp_path, fake_llm):
    from fake_llm import Fault

    from agents.providers import Providers
    from agents.router import model_classifier
    from config import TestConfig
    fake_llm.fail_next(Fault.empty_stream(done=True))
    client = Providers(TestConfig(tmp_path, OPENAI_BASE_URL=fake_llm.url),
                       client_options={"max_retries": 0}).client("router")
    decision = route("Anything on refunds?", document_names=["a.txt"], classify=model_classifier(client))
    client.close()
    assert (decision.agent, decision.rule, len(fake_llm.requests)) == ("chat", "default", 1)
