"""The suggestions read model's Redis layout (written by consumers/suggestions.py, read by the gateway).

Every key is a user's, hash-tagged `{user_id}` for Redis Cluster (an edge is its follower's), so the ranking script
reads the user's hidden set (store/relations.py) in the same slot.
"""

from __future__ import annotations


def following_key(user_id: str) -> str:
    return f"suggest:following:{{{user_id}}}"


def followers_key(user_id: str) -> str:
    return f"suggest:followers:{{{user_id}}}"


def via_key(user_id: str, candidate: str) -> str:
    return f"suggest:via:{{{user_id}}}:{candidate}"


def rank_key(user_id: str) -> str:
    return f"suggest:rank:{{{user_id}}}"


def edge_key(follower: str, followee: str) -> str:
    return f"suggest:edge:{{{follower}}}:{followee}"


# KEYS: rank, the viewer's hidden set (store/relations.py).  ARGV: how many.  {member, score, …}: the best ranked
# members not hidden, read in steps of that many, so the gateway needs no second trip for those it leaves out.
RANKED_VISIBLE = """
local limit, out, start = tonumber(ARGV[1]), {}, 0
while #out < 2 * limit do
  local chunk = redis.call('ZREVRANGE', KEYS[1], start, start + limit - 1, 'WITHSCORES')
  if #chunk == 0 then break end
  for i = 1, #chunk, 2 do
    if #out < 2 * limit and redis.call('SISMEMBER', KEYS[2], chunk[i]) == 0 then
      table.insert(out, chunk[i])
      table.insert(out, chunk[i + 1])
    end
  end
  start = start + limit
end
return out
"""
