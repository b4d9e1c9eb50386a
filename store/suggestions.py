"""The suggestions read model's Redis layout (written by consumers/suggestions.py, read by the gateway)."""

from __future__ import annotations


def following_key(user_id: str) -> str:
    return f"suggest:following:{user_id}"


def followers_key(user_id: str) -> str:
    return f"suggest:followers:{user_id}"


def via_key(user_id: str, candidate: str) -> str:
    return f"suggest:via:{user_id}:{candidate}"


def rank_key(user_id: str) -> str:
    return f"suggest:rank:{user_id}"


def edge_key(follower: str, followee: str) -> str:
    return f"suggest:edge:{follower}:{followee}"
