"""How one Gobbler server instance is configured: paths, admins, spoof rules, whitelist.

:func:`parse_spoof_rules` and :func:`parse_whitelist` read the files the
launcher is given (``gobbler-protocol.md`` §5.2, §6.3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Set

@dataclass
class SpoofRule:
    """Whom one spoofer may act as (§5.2)."""

    everyone: bool = False
    allowed: Set[str] = field(default_factory=set)
    excluded: Set[str] = field(default_factory=set)

    def permits(self, user: str) -> bool:
        if self.everyone:
            return user not in self.excluded
        return user in self.allowed


@dataclass
class Config:
    """Everything the actions need to know about this server instance."""

    registry: str
    staging: str
    admins: List[str] = field(default_factory=list)
    spoof: Dict[str, SpoofRule] = field(default_factory=dict)
    whitelist: List[str] = field(default_factory=list)
    probation_days: int = -1
    concurrency: int = 100

    def __post_init__(self) -> None:
        # Absolute internally so link classification does not depend on the cwd.
        self.registry = os.path.abspath(self.registry)
        self.staging = os.path.abspath(self.staging)
        self.whitelist = [os.path.normpath(w) for w in self.whitelist]


def parse_spoof_rules(text: str, where: str = "spoof file") -> Dict[str, SpoofRule]:
    """Parse ``spoofer:user1,user2`` lines; blank lines are ignored.

    Raises ValueError for a line that does not split into exactly two fields.
    """
    rules: Dict[str, SpoofRule] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip() == "":
            continue
        fields = line.split(":")
        if len(fields) != 2:
            raise ValueError(f"{where}, line {number}: expected 'spoofer:user1,user2', got {line!r}")
        spoofer, users = fields
        if users == "":
            continue
        rule = SpoofRule()
        for user in users.split(","):
            if user == "*":
                rule.everyone = True
            elif user.startswith("-"):
                rule.excluded.add(user[1:])
            else:
                rule.allowed.add(user)
        rules[spoofer] = rule
    return rules


def parse_whitelist(text: str, where: str = "whitelist file") -> List[str]:
    """Parse one absolute directory per line; blank lines are ignored.

    Raises ValueError for a relative line, as the Go service refuses to start.
    """
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip() == "":
            continue
        if not os.path.isabs(line):
            raise ValueError(f"{where}, line {number}: {line!r} is not an absolute path")
        out.append(os.path.normpath(line))
    return out

