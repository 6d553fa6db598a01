"""The Prolog feature suite, written from upstream's Prolog guide: one agent per feature, its input and
the part of the final state the guide promises. The source `tea` runs every case
(test_prolog_language.py), the AppImages run them too (tests/e2e/test_prolog_appimage.py)."""

from __future__ import annotations

from pathlib import Path

from tea_helpers import AgentCase

AGENTS = Path(__file__).resolve().parent / "agents"


class Case(AgentCase):
    AGENTS = AGENTS


CASES = [
    Case("three_spellings", "spellings.yaml", {"value": 4}, {"doubled": 8, "squared": 16, "tripled": 12, "halved": 4}),
    Case("facts_and_rules", "facts-rules.yaml", {"who": "tom"},
         {"grandchildren": ["ann", "pat"], "people": ["John, Jr.", "O'Brien, Mary"], "team_size": 3,
          "args": ["bar", "baz"]}),
    Case("clpfd", "clpfd.yaml", {"max_time": 10}, {"x": 8, "y": 7, "starts": [0, 2, 5]}),
    Case("cut", "cut.yaml", {"numbers": [3, 12, 5, 20]},
         {"maxima": [7, 9], "first_big": [12], "grade": "b", "no_hundred": True}),
    Case("backslash_escapes", "escapes.yaml", {"path": "C:\\dir\\file"},
         {"backslashed": 3, "codes": [92], "tab_length": 8, "lines": "one\ntwo", "path_length": 11,
          "separator": "\\", "parts": ["C:", "dir", "file"]}),
    Case("state_types", "state-types.yaml",
         {"name": "alice", "count": 3, "ratio": 0.5, "flag": True, "nothing": None, "tags": ["x", "y"],
          "profile": {"address": {"city": "Porto"}}},
         {"checks": {"name": "alice", "count": 3, "first_tag": "x", "city_length": 5, "absent": "missing",
                     "when": "2024-05-17"},
          "text": "a string", "atom": "an_atom", "number": 43, "float": 2.5, "yes": True, "no": False, "none": None,
          "list": [1, "two", "three"], "nested": {"level1": {"level2": [{"id": 1}, {"id": 2}]}},
          "term": "point(1,2)", "unbound": None}),
    Case("cleanup_between_nodes", "cleanup.yaml", {},
         {"first_notes": ["first"], "second_notes": ["second"], "counter": "clean", "helper": "clean"}),
    Case("parallel_branches", "parallel.yaml", {},
         {"results": {"branch_a": [101, ["a"]], "branch_b": [102, ["b", "bb"]], "branch_c": [103, ["c"]]}}),
    Case("preloaded_libraries_and_directives", "library.yaml", {"numbers": [4, 1, 3, 2]},
         {"stats": [10, 4, 2, 1, 30, 4, 4], "next": [5, 2, 4, 3], "even": [4, 2], "visits": ["home", "shop"],
          "rewritten": "new"}),
]
