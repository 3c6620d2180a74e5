"""The command line of every script: argparse, with config.py's fields as flags beside the script's own.

    parser = cli.Parser(__doc__, settings=("mnist_path", "mnistm_path"))
    parser.add_argument("--model", default="", metavar="PATH", help="...")
    options, overrides = parser.parse(arguments)   # UsageError: print it as one `error:` line, exit 2
    config = preset_config(**overrides)

A setting is spelt as its Config field (--batch_size 64, --binarize_source
false), with config.FLAG_ALIASES as short forms (--mnist PATH) and
config.RENAMED_FIELDS as former names. Every flag is snake_case; the former
spellings of a script's own flags go in `renamed` and are listed at the end
of --help as deprecated. No abbreviations, no flag given twice.
"""

import argparse
import dataclasses
import functools
import inspect
import io
import re
import sys
import tokenize

import config

# Every field but those train.py fills in.
SETTINGS = tuple(field.name for field in dataclasses.fields(config.Config) if field.name not in config.RECORDED_FIELDS)
# The test data of evaluate.py, plot_tsne.py and reverse_validation.py: this machine's files,
# not the paths recorded where the run trained.
TEST_DATA_SETTINGS = ("mnist_path", "mnistm_path")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes"), ("0", "false", "no")


class UsageError(ValueError):
    """A command line that cannot be run; its message is one line that says what to fix."""


class HelpPrinted(Exception):
    """--help printed the help text: the script ends there, with exit code 0."""


@functools.cache
def field_comments():
    """{field name: the comment of config.py's Config that explains it}: the field's own line's
    comment, else the comment lines right above it."""
    comments, above = {}, []
    source = inspect.getsource(config.Config)
    lines = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            lines.setdefault(token.start[0], []).append(token.string.lstrip("# ").strip())
    for number, line in enumerate(source.splitlines(), start=1):
        field = re.match(r"\s+(\w+): \w+ = ", line)
        stripped = line.strip()
        if field:
            own = lines.get(number, [])
            comments[field.group(1)] = " ".join(own) if own else " ".join(above)
            above = []
        elif stripped.startswith("#"):
            above += lines[number]
        else:
            above = []
    return comments


def parse_setting(name, text):
    """The value of Config field `name` that the command-line text `text` gives."""
    field_type = next(field.type for field in dataclasses.fields(config.Config) if field.name == name)
    if field_type is bool and text.lower() in TRUE_WORDS + FALSE_WORDS:
        return text.lower() in TRUE_WORDS
    if field_type is not bool:
        try:
            return field_type(text)
        except ValueError:
            pass
    raise UsageError(f"--{name} expects a {field_type.__name__}, got '{text}'.")


class SettingAction(argparse.Action):
    """Stores a Config field's value, converted to the field's type."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, parse_setting(self.dest, value))


class Parser(argparse.ArgumentParser):
    """A script's parser: `settings` (Config field names) and its own flags; errors raise UsageError.

    `defaults` replaces Config's default of a setting for this script;
    `renamed` maps a former spelling of an own flag to its flag; `resume`
    adds --resume.
    """

    def __init__(self, description, settings=(), defaults=None, renamed=None, resume=False):
        self.renamed = dict(renamed or {})
        former = {**{f"--{old}": f"--{new}" for old, new in config.RENAMED_FIELDS.items() if new in settings},
                  **self.renamed}
        epilog = ("Former spellings, accepted until the next release: "
                  + ", ".join(f"{old} (now {new})" for old, new in former.items()) + "." if former else None)
        self.flag_destinations = {}  # "--mnist" -> "mnist_path", for refusing a flag given twice.
        self.one_value_flags = set()
        super().__init__(description=description, epilog=epilog, usage=argparse.SUPPRESS, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        self.settings = tuple(settings)
        self.setting_defaults = dict(defaults or {})
        if resume:
            self.add_argument("--resume", action="store_true",
                              help="Continue the run from its latest checkpoint.")
        self.add_settings()

    def add_argument(self, *names, **options):
        action = super().add_argument(*names, **options)
        self.flag_destinations.update(dict.fromkeys(action.option_strings, action.dest))
        if action.nargs is None:
            self.one_value_flags.update(action.option_strings)
        return action

    def add_settings(self):
        if not self.settings:
            return
        group = self.add_argument_group("settings (config.py's Config; any of them as --name value)")
        defaults = config.Config()
        for name in self.settings:
            field_type = type(getattr(defaults, name)).__name__
            default = self.setting_defaults.get(name, getattr(defaults, name))
            explained = field_comments().get(name, "")
            self.add_setting(group, f"--{name}", name, field_type,
                             f"{explained} (default: {default!r})".strip().replace("%", "%%"))
        for short, name in config.FLAG_ALIASES.items():
            if name in self.settings:
                self.add_setting(group, f"--{short}", name, "PATH", f"--{short} is short for --{name}.")
        for old_name, name in config.RENAMED_FIELDS.items():
            if name in self.settings:
                self.add_setting(group, f"--{old_name}", name, "", argparse.SUPPRESS)

    def add_setting(self, group, flag, name, metavar, help_text):
        group.add_argument(flag, dest=name, action=SettingAction, metavar=metavar,
                           default=argparse.SUPPRESS, help=help_text)
        self.flag_destinations[flag] = name
        self.one_value_flags.add(flag)

    def add_renamed(self):
        """Adds each former spelling in `renamed` beside its flag, hidden from --help (its epilog names it)."""
        for old, new in self.renamed.items():
            if old in self.flag_destinations:
                continue
            action = next(action for action in self._actions if new in action.option_strings)
            hidden = dict(dest=action.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            if action.nargs == 0:  # A switch such as --mnistm_train.
                self.add_argument(old, action="store_const", const=action.const, **hidden)
            else:
                self.add_argument(old, nargs=action.nargs, type=action.type, choices=action.choices, **hidden)

    def parse(self, arguments):
        """(the script's own options, {Config field: value} of the settings given or defaulted here)."""
        self.add_renamed()
        self.refuse_repeats(arguments)
        options, unknown = self.parse_known_args(self.values_joined(arguments))
        if unknown:
            self.refuse_unknown(unknown[0])
        given = {name: getattr(options, name) for name in self.settings if hasattr(options, name)}
        for name in given:
            delattr(options, name)
        return options, {**self.setting_defaults, **given}

    def values_joined(self, arguments):
        """['--epochs', '-inf'] as ['--epochs=-inf']: argparse takes a value that starts with '-'
        for a flag, unless it is a number."""
        joined, remaining = [], list(arguments)
        while remaining:
            argument = remaining.pop(0)
            if argument in self.one_value_flags and remaining:
                argument = f"{argument}={remaining.pop(0)}"
            joined.append(argument)
        return joined

    def refuse_repeats(self, arguments):
        seen = set()
        for argument in arguments:
            if argument == "--":
                break
            destination = self.flag_destinations.get(argument.partition("=")[0])
            if destination in seen:
                raise UsageError(f"--{destination} is given twice: give each setting once.")
            if destination is not None:
                seen.add(destination)

    def refuse_unknown(self, argument):
        if not argument.startswith("--"):
            raise UsageError(f"Unexpected argument '{argument}': use --name value.")
        name = argument[2:].partition("=")[0]
        if name in config.RECORDED_FIELDS:
            raise UsageError(f"--{name} is not set on the command line: {config.RECORDED_FIELDS[name]}.")
        known = sorted(flag[2:] for flag in self.flag_destinations
                       if flag.startswith("--") and flag[2:] not in self.hidden_flags())
        raise UsageError(f"Unknown config key: '{name}'. Known keys: {', '.join(known)}.")

    def hidden_flags(self):
        return {old[2:] for old in self.renamed} | set(config.RENAMED_FIELDS) | {"help"}

    def print_help(self, file=None):
        # argparse's own ignores an OSError, so that a closed pipe (`--help | head`) would not reach
        # scripts.run_main, which ends quietly with 141 on it.
        (file or sys.stdout).write(self.format_help())

    def exit(self, status=0, message=None):
        if status == 0 and message is None:  # After --help: argparse's only call without an error.
            raise HelpPrinted()
        super().exit(status, message)

    def error(self, message):
        # argparse's "argument --seed: expected one argument", in the words of every other error here.
        missing = re.match(r"argument (--\w+)[^:]*: expected one argument", message)
        if missing:
            flag = missing.group(1)
            raise UsageError(f"--{self.flag_destinations.get(flag, flag[2:])} needs a value.")
        raise UsageError(" ".join(message.split()))


def parse_overrides(arguments, aliases=config.FLAG_ALIASES):
    """{Config field: value} of ['--name', 'value', '--other=value']: every setting, with `aliases`."""
    parser = Parser("", settings=SETTINGS)
    for short, name in aliases.items():
        if f"--{short}" not in parser.flag_destinations:
            parser.add_setting(parser, f"--{short}", name, "", argparse.SUPPRESS)
    return parser.parse(arguments)[1]


def as_arguments(overrides):
    """['--name', 'value', ...] that parse_overrides reads back as `overrides`."""
    return [text for name, value in overrides.items()
            for text in (f"--{name}", str(value).lower() if isinstance(value, bool) else str(value))]


def reports_usage_errors(main):
    """Wraps a script's main: 0 after --help; 2 after one `error:` line for a command line it cannot run."""
    @functools.wraps(main)
    def checked_main(*arguments, **keywords):
        try:
            return main(*arguments, **keywords)
        except HelpPrinted:
            return 0
        except UsageError as error:
            print(one_line(error), file=sys.stderr)
            return 2

    return checked_main


def one_line(error):
    """An error's message as one `error:` line."""
    return "error: " + " ".join(str(error).split())
