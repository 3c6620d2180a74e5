"""The README and the docs quote the generated results (docs/results.md) and the latest timed runs
(docs/measurements.md) rather than numbers of their own: a number edited by hand makes this fail."""

import os
import re

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The published figures the pages compare with: Ganin & Lempitsky (2015), table 2.
PAPER = {"0.5225", "0.7666", "0.9596"}
ACCURACY = re.compile(r"\b0\.\d{4}(?: ± 0\.\d{4})?")
MEAN_AND_SPREAD = re.compile(r"\b0\.\d{4} ± 0\.\d{4}")
MINUTES = re.compile(r"\b(\d+(?:\.\d)?) (?:minutes|min)\b")
SPEED = re.compile(r"\b(\d+(?:\.\d+)?)(?: steps/s|x)\b")


def read(path):
    with open(os.path.join(REPOSITORY, path), encoding="utf-8") as stream:
        return stream.read()


def section(text, heading):
    """The lines under `heading` (a markdown heading line) up to the next heading of any level."""
    lines = text.split("\n")
    start = lines.index(heading) + 1
    end = next((index for index in range(start, len(lines)) if lines[index].startswith("#")), len(lines))
    return "\n".join(lines[start:end])


def table(text):
    """The lines of the first markdown table in `text`."""
    lines = text.split("\n")
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    end = next((index for index in range(start, len(lines)) if not lines[index].startswith("|")), len(lines))
    return lines[start:end]


def timed_minutes(measurements):
    """The minutes of the latest timed runs: the rows of the time table marked **latest**."""
    rows = [row for row in table(section(measurements, "## Time of a whole run")) if "**latest**" in row]
    return {minutes for row in rows for minutes in re.findall(r"\((\d+(?:\.\d)?) min\)", row)}


def latest_speed(measurements):
    """The numbers of the latest speed bench: the first table under "## Training speed"."""
    return set(re.findall(r"\d+(?:\.\d+)?", "\n".join(table(section(measurements, "## Training speed")))))


def disagreements(readme, results, measurements, folders, pretrained):
    """What the pages say that the generated results and the latest timed runs do not."""
    problems = []
    summary = table(results)
    readme_table = table(section(readme, "## Results"))
    if readme_table != summary:
        problems.append("README's results table differs from docs/results.md's summary:\n"
                        + "\n".join(line for line in readme_table if line not in summary))
    # docs/folders.md also gives its own runs, dated; what it compares them with is a mean over seeds.
    quoted = (("README.md", readme, ACCURACY), ("docs/folders.md", folders, MEAN_AND_SPREAD),
              ("pretrained/README.md", pretrained, ACCURACY))
    for page, text, pattern in quoted:
        for number in pattern.findall(text):
            if number not in PAPER and number not in results:
                problems.append(f"{page}: {number} is not in docs/results.md")
    timed = timed_minutes(measurements)
    for minutes in MINUTES.findall(readme):
        if minutes not in timed:
            problems.append(f"README.md: {minutes} minutes is not a latest timed run of docs/measurements.md "
                            f"({', '.join(sorted(timed)) or 'none'})")
    speed = latest_speed(measurements)
    for number in SPEED.findall(readme):
        if number not in speed:
            problems.append(f"README.md: {number} (steps/s or a ratio) is not in the latest speed bench of "
                            "docs/measurements.md")
    return problems


def pages():
    return [read(path) for path in ("README.md", "docs/results.md", "docs/measurements.md", "docs/folders.md",
                                    "pretrained/README.md")]


def test_readme_and_docs_quote_the_generated_results_and_the_latest_timed_runs():
    assert disagreements(*pages()) == []


def test_the_pages_quote_some_results_and_times():
    readme, results, measurements, folders, pretrained = pages()
    assert len(table(section(readme, "## Results"))) >= 6
    assert ACCURACY.search(section(readme, "## Quick start")) and MINUTES.search(readme)
    assert timed_minutes(measurements) and SPEED.search(readme)
    assert MEAN_AND_SPREAD.search(folders) and ACCURACY.search(pretrained)


def edits(text, pattern):
    """`text` with each match of `pattern` changed in its last digit, one at a time."""
    for match in re.finditer(pattern, text):
        number = match.group(0)
        last = max(index for index, character in enumerate(number) if character.isdigit())
        changed = number[:last] + str((int(number[last]) + 1) % 10) + number[last + 1:]
        yield number, text[:match.start()] + changed + text[match.end():]


@pytest.mark.parametrize("pattern", [ACCURACY.pattern, MINUTES.pattern, SPEED.pattern])
def test_any_number_edited_by_hand_in_the_readme_is_caught(pattern):
    readme, *others = pages()
    caught = [number for number, edited in edits(readme, pattern) if disagreements(edited, *others)]
    assert caught == [number for number, _ in edits(readme, pattern)]
