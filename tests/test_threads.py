"""Branch resolution: explicit parents, edits of a first message, and older linear data."""
import threads


def msg(message_id, role="user", parent=None, edit_of=None):
    return {"message_id": message_id, "role": role, "parent_message_id": parent,
            "meta": {"edit_of": edit_of} if edit_of else None}


def ids(messages):
    return [m["message_id"] for m in messages]


LINEAR = [msg("u1"), msg("a1", "assistant", "u1"), msg("u2"), msg("a2", "assistant", "u2")]


def test_linear_history_without_parents_is_one_thread():
    assert ids(threads.thread(LINEAR)) == ["u1", "a1", "u2", "a2"]
    assert threads.parents(LINEAR) == {"u1": None, "a1": "u1", "u2": "a1", "a2": "u2"}


def test_regenerated_reply_is_a_sibling_and_the_newest_thread_shows_it():
    tree = LINEAR + [msg("a2b", "assistant", "u2")]
    assert ids(threads.thread(tree)) == ["u1", "a1", "u2", "a2b"]
    assert ids(threads.thread(tree, "a2")) == ["u1", "a1", "u2", "a2"]


def test_continuing_an_older_branch_keeps_the_other_branch_out():
    tree = LINEAR + [msg("a2b", "assistant", "u2"), msg("u3", parent="a2"), msg("a3", "assistant", "u3")]
    assert ids(threads.thread(tree)) == ["u1", "a1", "u2", "a2", "u3", "a3"]
    assert ids(threads.thread(tree, "a2b")) == ["u1", "a1", "u2", "a2b"]


def test_editing_the_first_message_makes_a_second_root():
    tree = LINEAR + [msg("u1b", edit_of="u1"), msg("a1b", "assistant", "u1b")]
    assert threads.parents(tree)["u1b"] is None
    assert ids(threads.thread(tree)) == ["u1b", "a1b"]


def test_editing_a_later_message_shares_its_parent():
    tree = LINEAR + [msg("u2b", parent="a1", edit_of="u2"), msg("a2c", "assistant", "u2b")]
    assert ids(threads.thread(tree)) == ["u1", "a1", "u2b", "a2c"]


def test_unknown_leaf_and_empty_history_give_no_thread():
    assert threads.thread(LINEAR, "someone-elses") == []
    assert threads.thread([]) == []


def test_a_corrupt_cycle_ends_instead_of_looping():
    tree = [msg("x", parent="y"), msg("y", parent="x")]
    assert sorted(ids(threads.thread(tree))) == ["x", "y"]


def test_with_parents_writes_the_resolved_parent_and_leaves_the_input_alone():
    shaped = threads.with_parents(LINEAR)
    assert [m["parent_message_id"] for m in shaped] == [None, "u1", "a1", "u2"]
    assert LINEAR[2]["parent_message_id"] is None
