"""Local stand-ins for third-party services, used by tests."""

from tests.fakes.github import FakeGitHub, GitHubUser

__all__ = ["FakeGitHub", "GitHubUser"]
