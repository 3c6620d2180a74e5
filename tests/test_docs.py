"""The README and docs/ link only to files that exist; user commands name a user's paths."""

import ast
import glob
import os
import re

from conftest import REPOSITORY

# [text](target) and ![alt](target); a target with a scheme or only an anchor is not a file.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files():
    return [os.path.join(REPOSITORY, "README.md"), *sorted(glob.glob(os.path.join(REPOSITORY, "docs", "*.md")))]


def test_every_relative_link_and_picture_of_the_docs_exists():
    missing = []
    for path in markdown_files():
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file = os.path.normpath(os.path.join(os.path.dirname(path), target.split("#")[0]))
            if not os.path.exists(file):
                missing.append(f"{os.path.relpath(path, REPOSITORY)} -> {target}")
    assert not missing, missing


def test_user_commands_name_a_users_path_not_the_test_data_folder():
    # The repository's own copies of the data are for the tests and benchmarks; a user's command
    # in the README or a script's usage says PATH.
    texts = {}
    for path in [os.path.join(REPOSITORY, "README.md"), *sorted(glob.glob(os.path.join(REPOSITORY, "*.py")))]:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        texts[os.path.basename(path)] = text if path.endswith(".md") else ast.get_docstring(ast.parse(text)) or ""
    assert len(texts) > 5
    assert [name for name, text in texts.items() if "shared/data" in text] == []
