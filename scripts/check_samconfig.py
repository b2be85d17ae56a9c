"""samconfig.toml as `sam deploy` reads it, against what is written there and what template.yaml accepts.

Run by scripts/lint-template with the pinned SAM CLI's Python (.venv-tools/sam):

    check_samconfig.py TEMPLATE SAMCONFIG

For every environment of SAMCONFIG with a `[<env>.deploy.parameters]` section:

1. SAM CLI's own `sam deploy` command (its click options, its samconfig loader, its
   `CfnParameterOverridesType`) reads the section; `do_cli` is replaced so that nothing is deployed and the
   values it would pass to CloudFormation are captured;
2. each parameter override must reach CloudFormation exactly as written: `"Key=Value"` entries of a TOML
   list, where a value with spaces is quoted (`"CheckScheduleExpression=\\"rate(30 minutes)\\""`). SAM CLI
   splits unquoted values on spaces: `rate(30 minutes)` would arrive as `rate(30`;
3. each value must pass the template's own constraints (AllowedPattern, AllowedValues, MinValue/MaxValue,
   MinLength/MaxLength), every parameter without a Default must be set, and no key may be unknown to the
   template: CloudFormation would reject the change set (or, worse, create schedules that fail on create);
4. deployment rules the template cannot express: no ARN of a documentation account (a shipped example would
   make the stack subscribe to a topic that does not exist), and every failover alarm name starts with
   FailoverAlarmNamePrefix (the direct alarm action's permission admits only that prefix).

Before all that, a self-test: an entry known to be split by SAM CLI must be reported, or this check no longer
sees what SAM CLI does (and fails).
"""

import inspect
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

# SAM CLI keeps its settings (telemetry id, last version check) in this folder: a throw-away one, no telemetry.
os.environ["__SAM_CLI_APP_DIR"] = tempfile.mkdtemp(prefix="sam-cli-")
os.environ["SAM_CLI_TELEMETRY"] = "0"

import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import samcli.commands.deploy.command as deploy_command  # noqa: E402
import samcli.lib.utils.version_checker as version_checker  # noqa: E402

# No call to PyPI for "a newer SAM CLI is available" after each command.
version_checker.fetch_and_compare_versions = lambda: None

# Account ids that appear in AWS documentation and in our examples: never a real deployment target.
EXAMPLE_ACCOUNTS = ("111122223333", "123456789012", "444455556666")


class _CfnLoader(yaml.SafeLoader):
    pass


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_CfnLoader.add_multi_constructor("!", _any_tag)


def sam_deploy_reads(samconfig: Path, template: Path, env: str) -> dict:
    """What `sam deploy --config-env ENV` would hand on: stack name, region and parameter overrides."""
    captured = {}
    real = deploy_command.do_cli
    names = list(inspect.signature(real).parameters)
    for wanted in ("stack_name", "region", "parameter_overrides"):
        if wanted not in names:
            raise SystemExit(f"SAM CLI's deploy do_cli has no `{wanted}` parameter any more: update {__file__}")

    def capture(*args, **kwargs):
        captured.update(dict(zip(names, args)))
        captured.update(kwargs)

    deploy_command.do_cli = capture
    try:
        result = CliRunner().invoke(
            deploy_command.cli,
            ["--config-file", str(samconfig), "--config-env", env, "--template-file", str(template)],
        )
    finally:
        deploy_command.do_cli = real
    if result.exit_code != 0 or not captured:
        detail = result.output.strip() or repr(result.exception)
        raise CheckFailed([f"{env}: sam deploy rejects the configuration: {detail}"])
    return captured


class CheckFailed(Exception):
    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        q = value[0]
        return value[1:-1].replace("\\" + q, q)
    return value


def written_overrides(env: str, section: dict) -> tuple[dict, list]:
    """The overrides as a reader of samconfig.toml understands them, and the problems of their form."""
    raw = section.get("parameter_overrides", [])
    problems = []
    if isinstance(raw, dict):
        return {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in raw.items()}, problems
    if isinstance(raw, str):
        problems.append(
            f"{env}: parameter_overrides is one string; write a TOML list, one \"Key=Value\" per entry, so that "
            "what each parameter receives can be read (and checked)"
        )
        return {}, problems
    written = {}
    for entry in raw:
        key, sep, value = str(entry).partition("=")
        if not sep or not key:
            problems.append(f"{env}: parameter_overrides entry {entry!r} is not Key=Value")
            continue
        if key in written:
            problems.append(f"{env}: {key} is set twice")
        written[key] = _unquote(value)
    return written, problems


def compare(env: str, written: dict, passed: dict) -> list:
    problems = []
    for key, value in written.items():
        if key not in passed:
            problems.append(f"{env}: {key}: written {value!r}, but SAM CLI passes no {key} at all")
        elif passed[key] != value:
            problems.append(
                f"{env}: {key}: written {value!r}, SAM CLI passes {passed[key]!r} to CloudFormation "
                "(a value with spaces must be quoted: \"Key=\\\"a value\\\"\")"
            )
    for key in passed.keys() - written.keys():
        problems.append(f"{env}: SAM CLI passes {key}={passed[key]!r}, which no entry sets as such")
    return problems


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def constraint_problems(env: str, parameters: dict, values: dict) -> list:
    problems = []
    for key, value in values.items():
        p = parameters.get(key)
        if p is None:
            problems.append(f"{env}: {key} is not a parameter of the template (CloudFormation rejects the change set)")
            continue
        kind = p.get("Type", "String")
        where = f"{env}: {key}={value!r}"
        if kind == "Number":
            n = _number(value)
            if n is None:
                problems.append(f"{where} is not a number")
                continue
            if "MinValue" in p and n < float(p["MinValue"]):
                problems.append(f"{where} is below MinValue {p['MinValue']}")
            if "MaxValue" in p and n > float(p["MaxValue"]):
                problems.append(f"{where} is above MaxValue {p['MaxValue']}")
            if "AllowedValues" in p and n not in [float(a) for a in p["AllowedValues"]]:
                problems.append(f"{where} is not one of {p['AllowedValues']}")
        elif kind == "String":
            if "AllowedPattern" in p and not re.fullmatch(p["AllowedPattern"], value):
                problems.append(f"{where} does not match AllowedPattern {p['AllowedPattern']}")
            if "AllowedValues" in p and value not in [str(a) for a in p["AllowedValues"]]:
                problems.append(f"{where} is not one of {p['AllowedValues']}")
            if "MinLength" in p and len(value) < int(p["MinLength"]):
                problems.append(f"{where} is shorter than MinLength {p['MinLength']}")
            if "MaxLength" in p and len(value) > int(p["MaxLength"]):
                problems.append(f"{where} is longer than MaxLength {p['MaxLength']}")
        elif kind == "CommaDelimitedList":
            items = value.split(",")
            if value and any(i != i.strip() or not i for i in items):
                problems.append(f"{where}: a list item is empty or has spaces around it")
    for key, p in parameters.items():
        if "Default" not in p and key not in values:
            problems.append(f"{env}: {key} has no Default in the template and is not set")
    return problems


def deployment_rules(env: str, parameters: dict, values: dict) -> list:
    problems = []
    for key, value in values.items():
        for account in EXAMPLE_ACCOUNTS:
            if account in value:
                problems.append(
                    f"{env}: {key} names the documentation account {account}: the stack would point at a resource "
                    "that does not exist (leave it empty until the resource exists: docs/deploy.md)"
                )
    effective = {k: str(p.get("Default", "")) for k, p in parameters.items()} | values
    prefix = effective.get("FailoverAlarmNamePrefix", "")
    if "FailoverAlarmNamePrefix" in parameters:
        for name in filter(None, effective.get("FailoverAlarmNames", "").split(",")):
            if not name.startswith(prefix):
                problems.append(
                    f"{env}: failover alarm {name!r} does not start with FailoverAlarmNamePrefix {prefix!r}: "
                    "its direct Lambda action would be refused"
                )
    return problems


# Values CloudFormation must refuse before it creates anything (each would fail the schedules on create and
# roll the stack back), and values it must accept.
SCHEDULE_PARAMETERS = ("CheckScheduleExpression", "SnapshotScheduleExpression")
SCHEDULES_REFUSED = ("rate(30", "rate(6", "rate(30 minutes", "rate(0 minutes)", "rate(5 minute)", "rate(1 minutes)",
                     "30 minutes", "cron(0 12 * * ?)", "at(2030-01-01T00:00:00)", "")
SCHEDULES_ACCEPTED = ("rate(30 minutes)", "rate(1 hour)", "rate(6 hours)", "rate(1 day)", "rate(1 minute)",
                      "cron(0 */6 * * ? *)", "cron(15 10 ? * MON-FRI *)")


def self_test(template: Path, parameters: dict) -> None:
    """The check must see SAM CLI's split of an unquoted value with a space, or it proves nothing; and the
    template's schedule parameters must refuse what such a split produces."""
    for name in SCHEDULE_PARAMETERS:
        for bad in SCHEDULES_REFUSED:
            if not constraint_problems("selftest", {name: parameters[name]}, {name: bad}):
                raise SystemExit(f"self-test FAILED: template parameter {name} accepts {bad!r} (AllowedPattern)")
        for good in SCHEDULES_ACCEPTED:
            problems = constraint_problems("selftest", {name: parameters[name]}, {name: good})
            if problems:
                raise SystemExit(f"self-test FAILED: template parameter {name} refuses {good!r}: {problems}")
    print(f"  self-test: {', '.join(SCHEDULE_PARAMETERS)} refuse {len(SCHEDULES_REFUSED)} broken expressions "
          f"(e.g. 'rate(30') and accept {len(SCHEDULES_ACCEPTED)} valid ones")
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "samconfig.toml"
        config.write_text(
            'version = 0.1\n[selftest.deploy.parameters]\nstack_name = "selftest"\n'
            'parameter_overrides = ["CheckScheduleExpression=rate(30 minutes)", '
            '"SnapshotScheduleExpression=\\"rate(6 hours)\\""]\n'
        )
        section = tomllib.loads(config.read_text())["selftest"]["deploy"]["parameters"]
        written, _ = written_overrides("selftest", section)
        passed = sam_deploy_reads(config, template, "selftest").get("parameter_overrides") or {}
        problems = compare("selftest", written, passed)
        if passed.get("SnapshotScheduleExpression") != "rate(6 hours)" or not any(
            "CheckScheduleExpression" in p and "'rate(30'" in p for p in problems
        ):
            raise SystemExit(
                "self-test FAILED: SAM CLI's parsing of an unquoted 'rate(30 minutes)' was not reported as "
                f"'rate(30' (SAM CLI passed {passed!r}; problems {problems!r}): this check no longer sees what "
                "SAM CLI does"
            )
    print("  self-test: an unquoted 'rate(30 minutes)' is reported (SAM CLI passes 'rate(30'); a quoted one is not")


def main() -> int:
    template, samconfig = Path(sys.argv[1]), Path(sys.argv[2])
    parameters = yaml.load(template.read_text(), Loader=_CfnLoader)["Parameters"]
    self_test(template, parameters)
    config = tomllib.loads(samconfig.read_text())
    envs = [e for e, v in config.items() if isinstance(v, dict) and "parameters" in v.get("deploy", {})]
    if not envs:
        print(f"{samconfig}: no [<env>.deploy.parameters] section", file=sys.stderr)
        return 1
    failed = []
    for env in envs:
        section = config[env]["deploy"]["parameters"]
        try:
            read = sam_deploy_reads(samconfig, template, env)
        except CheckFailed as e:
            failed.extend(e.problems)
            continue
        passed = read.get("parameter_overrides") or {}
        written, problems = written_overrides(env, section)
        problems += compare(env, written, passed)
        problems += constraint_problems(env, parameters, passed)
        problems += deployment_rules(env, parameters, passed)
        if problems:
            failed.extend(problems)
        else:
            print(f"  {env}: stack {read['stack_name']} in {read['region']}: {len(passed)} parameters reach "
                  "CloudFormation as written and pass the template's constraints")
    if failed:
        print("samconfig.toml check FAILED:", *failed, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
