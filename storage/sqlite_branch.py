"""The branch a turn reads, walked in SQLite by one recursive query (see threads.py for the rules).

Each step resolves one message's parent with index lookups only (message_id is unique,
messages(conversation_id, seq) gives the message stored just before): the cost grows with the
path since the summary checkpoint, not with the conversation.
"""
from __future__ import annotations

# One step: '1' + the parent when it is on the path; '0' + the message an edit replaces, whose
# own parent (resolved by the next step, by the same rules) is the edit's; NULL at a root.
_STEP = """
CASE
  WHEN EXISTS (SELECT 1 FROM messages p WHERE p.message_id = m.parent_message_id
               AND p.message_id != m.message_id AND p.conversation_id = :cid AND p.user_id = :uid)
    THEN '1' || m.parent_message_id
  WHEN json_type(m.meta, '$.edit_of') = 'text' AND EXISTS (
         SELECT 1 FROM messages e WHERE e.message_id = json_extract(m.meta, '$.edit_of')
         AND e.conversation_id = :cid AND e.user_id = :uid AND e.seq < m.seq)
    THEN '0' || json_extract(m.meta, '$.edit_of')
  ELSE '1' || (SELECT b.message_id FROM messages b WHERE b.conversation_id = :cid AND b.user_id = :uid
               AND b.seq < m.seq ORDER BY b.seq DESC LIMIT 1)
END"""

# One row per message visited, carrying its columns: `shown` is '0' for an edited message passed
# through. The walk stops after the checkpoint (when shown), at a root, or at :limit steps (only a
# corrupt parent cycle gets there; the caller cuts at the first repeat).
_WALK = f"""
WITH RECURSIVE walk AS (
  SELECT '1' AS shown, {_STEP} AS next, 0 AS depth, {{columns}} FROM messages m
  WHERE m.message_id = :leaf AND m.conversation_id = :cid AND m.user_id = :uid
  UNION ALL
  SELECT substr(walk.next, 1, 1), {_STEP}, walk.depth + 1, {{columns}}
  FROM walk JOIN messages m ON m.message_id = substr(walk.next, 2)
  WHERE NOT (walk.shown = '1' AND walk.message_id = :stop) AND walk.depth < :limit
)
SELECT {{names}} FROM walk WHERE shown = '1' ORDER BY depth
"""


class SqliteBranch:
    """Mixin for SqliteStore: the rows of branch_since, newest first, cut at a repeat."""

    def _branch_rows(self, user_id: str, conversation_id: str, leaf_id: str, checkpoint_id: str | None,
                     columns: str) -> list:
        db = self._db()
        count = db.execute("SELECT message_count FROM conversations WHERE conversation_id = ? AND user_id = ?",
                           (conversation_id, user_id)).fetchone()
        if count is None:
            return []
        qualified = ", ".join("m." + name.strip() for name in columns.split(","))
        rows = db.execute(_WALK.format(columns=qualified, names=columns),
                          {"leaf": leaf_id, "cid": conversation_id, "uid": user_id,
                           "stop": "" if checkpoint_id is None else checkpoint_id, "limit": 2 * count[0] + 2})
        path, seen = [], set()
        for row in rows:
            if row["message_id"] in seen:
                break
            seen.add(row["message_id"])
            path.append(row)
        return path
