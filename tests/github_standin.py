"""The GitHub API stand-in the gypsum tests use (it ships in the package, for demos too)."""

from artifacts_py.servers.gypsum.github_local import GitHubStandIn

__all__ = ["GitHubStandIn"]
