"""The Prolog feature suite through both AppImages: their own SWI-Prolog and janus-swi, nothing of this
machine's (an SWI_HOME_DIR of the user's must not matter), and the same one-line failures."""

from __future__ import annotations

import pytest

from app_modules import APP_TESTS, load

pytestmark = pytest.mark.slow
suite = load(APP_TESTS / "prolog" / "test_prolog_language.py")
helpers = load(APP_TESTS / "tea_helpers.py")
FLAVORS = ("plain_appimage", "llm_appimage")


@pytest.fixture(params=FLAVORS)
def appimage(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def write_agent(tmp_path):
    def write(text: str, name: str = "agent.yaml"):
        (tmp_path / name).write_text(text)
        return tmp_path / name
    return write


@pytest.mark.parametrize("case", suite.CASES, ids=[case.id for case in suite.CASES])
def test_documented_feature_through_the_appimage(case, appimage):
    suite.run_case(case, tea=appimage)


def test_a_user_swi_home_does_not_replace_the_bundled_one(plain_appimage, write_agent, tmp_path):
    agent = suite.prolog_agent(write_agent, "X in 1..3, X #> 2, return(x, X).")
    result = helpers.run_tea("run", "-q", agent, tea=plain_appimage, env={"SWI_HOME_DIR": str(tmp_path)})
    assert helpers.final_state(result)["x"] == 3


def test_timeout_and_syntax_error_are_one_line(plain_appimage, write_agent):
    looping = suite.prolog_agent(write_agent, "loop :- loop.\nloop.", settings="settings:\n  prolog:\n    timeout: 1\n")
    result = helpers.run_tea("run", "-q", looping, tea=plain_appimage)
    assert helpers.assert_one_line_error(result).endswith("Prolog timeout: the node ran longer than 1 s "
                                                           "(settings.prolog.timeout)")
    broken = suite.prolog_agent(write_agent, "state(input, X,\nX = test.", name="broken")
    result = helpers.run_tea("run", "-q", broken, tea=plain_appimage)
    assert helpers.assert_one_line_error(result).endswith("Prolog syntax error at line 7: Operator expected")
