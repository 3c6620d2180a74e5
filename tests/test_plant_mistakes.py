"""tools/plant_mistakes.py counts a mistake as caught exactly when its tests fail."""

import os
import shutil

from conftest import REPOSITORY
from tools import plant_mistakes


def project_with_test(folder, body):
    # The repository's pytest.ini (two xdist workers) with one test file of the given body.
    os.makedirs(os.path.join(folder, "tests"))
    shutil.copy(os.path.join(REPOSITORY, "pytest.ini"), folder)
    with open(os.path.join(folder, "tests", "test_guard.py"), "w", encoding="utf-8") as stream:
        stream.write(f"def test_guard():\n    {body}\n\n\ndef test_other():\n    pass\n")
    return str(folder)


def test_a_failing_test_catches_the_mistake_under_the_projects_pytest_settings(tmp_path):
    caught, summary = plant_mistakes.run_tests(project_with_test(tmp_path, "assert False"), ["tests/test_guard.py"])
    assert caught, summary
    assert "1 failed" in summary


def test_passing_tests_miss_it_and_a_broken_import_is_not_a_catch(tmp_path):
    caught, summary = plant_mistakes.run_tests(project_with_test(tmp_path / "passes", "pass"), ["tests/test_guard.py"])
    assert not caught and "2 passed" in summary
    broken = project_with_test(tmp_path / "broken", "pass")
    with open(os.path.join(broken, "tests", "test_guard.py"), "a", encoding="utf-8") as stream:
        stream.write("import a_module_that_does_not_exist\n")
    assert not plant_mistakes.run_tests(broken, ["tests/test_guard.py"])[0]


def test_every_mistake_edits_text_that_occurs_once_in_the_current_code_and_names_existing_tests():
    unplantable = []
    for mistake in plant_mistakes.MISTAKES:
        with open(os.path.join(REPOSITORY, mistake.path), encoding="utf-8") as stream:
            text = stream.read()
        try:
            plant_mistakes.planted(mistake, text)
        except SystemExit as error:
            unplantable.append(str(error))
        unplantable += [f"{mistake.name}: no {test}" for test in mistake.tests
                        if not os.path.isfile(os.path.join(REPOSITORY, test.split("::")[0]))]
    assert len(plant_mistakes.MISTAKES) > 50
    assert unplantable == []
