"""The paging path as AWS applies it, checked against moto (in process, no network): run by scripts/lint-template
with the moto virtualenv (.venv, moto 5.2.1).

    check_paging.py TEMPLATE FILTER_POLICY EVENTS_DIR

1. The pager subscription's filter policy that docs/deploy.md recommends (FILTER_POLICY, the file the subscribe
   command uses) must let through: the handlers' critical and warning pages, the stack's own CloudWatch alarm
   notifications and the manual-trigger audit page (both carry no message attributes); and hold back info
   messages (drills, recoveries). moto applies SNS filter policies to SNS -> SQS deliveries: the old
   recommendation, {"severity": ["critical", "warning"]}, must drop the alarm notifications here (proof that the
   filter is applied, and the reason it was replaced).
2. The EventBridge rules of TEMPLATE (intrinsics resolved with sample names) against sample events through
   moto's event routing (a rule per template rule, a queue as its target): the failover-alarm rule takes only its alarms; the manual-trigger audit rule takes
   CloudTrail Invoke events of manual-trigger by people, by IAM users and by the root user, by name, ARN or
   qualified ARN, and leaves out its schedules' role, the drill principals, other functions and other calls.
   Its input transformer must render valid JSON shaped like an alarm notification.
"""

import json
import os
import re
import sys
from pathlib import Path

os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-west-2")

import boto3  # noqa: E402
import yaml  # noqa: E402
from moto import mock_aws  # noqa: E402

REGION, ACCOUNT, STACK = "us-west-2", "123456789012", "dr-test"
DRILL_ROLE = f"arn:aws:iam::{ACCOUNT}:role/dr-drills"
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)
    return ok


# ------------------------------------------------------------------------------------------ template intrinsics
class _CfnLoader(yaml.SafeLoader):
    pass


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tagged)


class Resolver:
    """Resolves the intrinsics a rule uses, with sample physical names (stack dr-test in us-west-2)."""

    def __init__(self, template, parameters):
        self.resources = template["Resources"]
        self.conditions = template.get("Conditions", {})
        self.parameters = {k: p.get("Default", "") for k, p in template["Parameters"].items()} | parameters
        self.pseudo = {"AWS::StackName": STACK, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                       "AWS::Partition": "aws", "AWS::NoValue": None}

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            p = self.parameters[name]
            return p.split(",") if isinstance(p, str) and self.is_list(name) else p
        r = self.resources[name]
        props = r.get("Properties", {})
        for key in ("FunctionName", "Name", "TopicName", "QueueName"):
            if key in props:
                return self.resolve(props[key])
        return f"{STACK}-{name}-0123ABCD"

    def is_list(self, name):
        return name in self.template_list_params

    def getatt(self, name, attribute):
        kind = self.resources[name]["Type"]
        if attribute != "Arn":
            return f"{STACK}-{name}"
        if kind == "AWS::Serverless::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.ref(name)}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{name}-0123ABCD"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.ref(name)}"
        if kind == "AWS::Events::Rule":
            return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.ref(name)}"
        return f"arn:aws:unknown:{REGION}:{ACCOUNT}:{name}"

    def sub(self, text, extra=None):
        def one(m):
            key = m.group(1)
            if extra and key in extra:
                return str(extra[key])
            if "." in key:
                return self.getatt(*key.split(".", 1))
            value = self.ref(key)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, v):
        if isinstance(v, list):
            return [self.resolve(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, x), = v.items()
            if k == "Ref":
                return self.ref(x)
            if k == "Fn::GetAtt":
                return self.getatt(*x)
            if k == "Fn::Sub":
                if isinstance(x, list):
                    return self.sub(x[0], {n: self.resolve(e) for n, e in x[1].items()})
                return self.sub(x)
            if k == "Fn::Join":
                return x[0].join(str(e) for e in _flat(self.resolve(x[1])))
            if k == "Fn::Split":
                return self.resolve(x[1]).split(x[0])
            if k == "Fn::If":
                return self.resolve(x[1] if self.condition(x[0]) else x[2])
            if k == "Fn::Equals":
                return self.resolve(x[0]) == self.resolve(x[1])
            if k == "Fn::Not":
                return not self.resolve(x[0])
            if k == "Condition":
                return self.condition(x)
        return {k: self.resolve(x) for k, x in v.items()}


    def condition(self, name):
        return bool(self.resolve(self.conditions[name]))


def _flat(v):
    return [y for x in v for y in (_flat(x) if isinstance(x, list) else [x])]


# --------------------------------------------------------------------------------------------- 1. filter policy
def check_filter_policy(policy_file: Path, events_dir: Path):
    recommended = policy_file.read_text()
    json.loads(recommended)
    alarm = json.loads(events_dir.joinpath("health-alarm/sns-metric-alarm.json").read_text())
    alarm_body = alarm["Records"][0]["Sns"]["Message"]
    audit_body = json.dumps({"AlarmName": f"{STACK}-manual-trigger-invoked", "NewStateValue": "ALARM",
                             "NewStateReason": "manual-trigger invoked by someone", "StateChangeTime": "now",
                             "Region": REGION})

    def attrs(severity):
        values = {"event_type": "failover", "severity": severity, "environment": "prod", "incident_key": "k"}
        return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}

    messages = {
        "critical page": (json.dumps({"AlarmName": "DR prod failover", "NewStateValue": "ALARM"}), attrs("critical")),
        "warning page": (json.dumps({"AlarmName": "DR prod replication", "NewStateValue": "ALARM"}), attrs("warning")),
        "info message (drill)": (json.dumps({"AlarmName": "DR prod drill", "NewStateValue": "OK"}), attrs("info")),
        "stack alarm notification (CloudWatch, no attributes)": (alarm_body, None),
        "manual-trigger audit page (EventBridge, no attributes)": (audit_body, None),
    }
    wanted = {"critical page", "warning page", "stack alarm notification (CloudWatch, no attributes)",
              "manual-trigger audit page (EventBridge, no attributes)"}
    old = json.dumps({"severity": ["critical", "warning"]})
    with mock_aws():
        sns, sqs = boto3.client("sns", REGION), boto3.client("sqs", REGION)
        topic = sns.create_topic(Name=f"{STACK}-paging")["TopicArn"]
        queues = {}
        for name, policy in (("recommended", recommended), ("old", old)):
            url = sqs.create_queue(QueueName=f"pager-{name}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                          Attributes={"FilterPolicy": policy, "RawMessageDelivery": "true"})
            queues[name] = url
        for label, (body, attributes) in messages.items():
            kwargs = {"MessageAttributes": attributes} if attributes else {}
            sns.publish(TopicArn=topic, Message=body, Subject="DR", **kwargs)

        def received(url):
            bodies = []
            while True:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                if not got:
                    return {label for label, (body, _) in messages.items() if body in bodies}
                bodies += [m["Body"] for m in got]

        pager, legacy = received(queues["recommended"]), received(queues["old"])
    check(pager == wanted, f"filter policy {recommended.strip()}: the pager gets {sorted(pager)}, expected "
                           f"{sorted(wanted)}")
    check("stack alarm notification (CloudWatch, no attributes)" not in legacy and "critical page" in legacy,
          f"moto did not apply the old filter policy {old} as AWS does (it got {sorted(legacy)}): the check above "
          "proves nothing")
    print(f"  filter policy {policy_file}: the pager gets {len(pager)} of {len(messages)} kinds (not info); "
          "the old policy drops the stack's own alarm notifications")


# -------------------------------------------------------------------------------------------- 2. event patterns
def cloudtrail_invoke(function, identity, event_name="Invoke"):
    return {
        "version": "0", "id": "6f0a1b2c-0000-0000-0000-000000000000", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.lambda", "account": ACCOUNT, "time": "2026-11-27T10:00:00Z", "region": REGION,
        "resources": [],
        "detail": {
            "eventVersion": "1.09", "userIdentity": identity, "eventTime": "2026-11-27T10:00:00Z",
            "eventSource": "lambda.amazonaws.com", "eventName": event_name, "awsRegion": REGION,
            "sourceIPAddress": "203.0.113.7",
            "requestParameters": {"functionName": function, "invocationType": "RequestResponse"},
            "eventID": "2b7e1f0e-0000-0000-0000-000000000000", "readOnly": False, "eventType": "AwsApiCall",
            "managementEvent": False, "eventCategory": "Data",
        },
    }


def assumed_role(role_arn, session="someone@example.com"):
    name = role_arn.rsplit("/", 1)[1]
    return {"type": "AssumedRole", "principalId": f"AROAEXAMPLE:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{session}", "accountId": ACCOUNT,
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": role_arn,
                                                 "accountId": ACCOUNT, "userName": name}}}


def render(template_text, paths, event):
    """EventBridge's input transformer, for a check that the result is JSON (values escaped as EventBridge does)."""
    out = template_text
    for key, path in paths.items():
        value = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        out = out.replace(f"<{key}>", json.dumps(value)[1:-1] if isinstance(value, str) else json.dumps(value))
    return out


def check_event_patterns(template_file: Path, events_dir: Path):
    template = yaml.load(template_file.read_text(), Loader=_CfnLoader)
    # With drill principals, and without (then a drill role is any other role: its invocations page).
    check_rules(template, events_dir, DRILL_ROLE)
    check_rules(template, events_dir, "")


def check_rules(template, events_dir: Path, drill_principals: str):
    list_params = {k for k, p in template["Parameters"].items() if p.get("Type") == "CommaDelimitedList"}
    resolver = Resolver(template, {"FailoverAlarmNames": "dbx-prod-workspace-unreachable,dbx-prod-api-error-rate",
                                   "DrillPrincipalArns": drill_principals})
    resolver.template_list_params = list_params
    rules = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
    manual = resolver.ref("ManualTriggerFunction")
    manual_arn = resolver.getatt("ManualTriggerFunction", "Arn")
    other_arn = resolver.getatt("HealthAlarmFunction", "Arn")
    scheduler = resolver.getatt("SchedulerRole", "Arn")
    oncall = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_OnCall_0123456789abcdef"
    alarm_event = json.loads(events_dir.joinpath("health-alarm/eventbridge-metric-alarm.json").read_text())

    def alarm_named(name):
        e = json.loads(json.dumps(alarm_event))
        e["detail"]["alarmName"] = name
        return e

    cases = {
        "AlarmStateChangeRule": [
            ("a failover alarm's state change", alarm_named("dbx-prod-workspace-unreachable"), True),
            ("the other failover alarm", alarm_named("dbx-prod-api-error-rate"), True),
            ("an alarm not in FailoverAlarmNames", alarm_named("some-other-alarm"), False),
        ],
        "ManualTriggerInvokedRule": [
            ("on-call (SSO role) by name", cloudtrail_invoke(manual, assumed_role(oncall)), True),
            ("on-call by ARN", cloudtrail_invoke(manual_arn, assumed_role(oncall)), True),
            ("on-call by qualified ARN", cloudtrail_invoke(f"{manual_arn}:$LATEST", assumed_role(oncall)), True),
            ("InvokeAsync", cloudtrail_invoke(manual, assumed_role(oncall), "InvokeAsync"), True),
            ("an IAM user", cloudtrail_invoke(manual, {"type": "IAMUser", "principalId": "AIDAEXAMPLE",
                                                       "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
                                                       "accountId": ACCOUNT, "userName": "alice"}), True),
            ("the root user", cloudtrail_invoke(manual, {"type": "Root", "principalId": ACCOUNT,
                                                         "arn": f"arn:aws:iam::{ACCOUNT}:root",
                                                         "accountId": ACCOUNT}), True),
            ("its schedules (scheduler role)", cloudtrail_invoke(manual_arn, assumed_role(scheduler, "sched")), False),
            ("the drill role", cloudtrail_invoke(manual, assumed_role(DRILL_ROLE)), not drill_principals),
            ("another function", cloudtrail_invoke(other_arn, assumed_role(oncall)), False),
            ("a read of its configuration", cloudtrail_invoke(manual, assumed_role(oncall), "GetFunction"), False),
        ],
    }
    check(set(cases) == set(rules), f"rules {sorted(rules)} and the cases here {sorted(cases)} differ: add cases")
    with mock_aws():
        events, sqs = boto3.client("events", REGION), boto3.client("sqs", REGION)
        for rule_id, rule in rules.items():
            # The rule on moto's default bus, its target a queue: what reaches the queue matched the pattern.
            pattern = json.dumps(resolver.resolve(rule["Properties"]["EventPattern"]))
            url = sqs.create_queue(QueueName=f"tap-{rule_id}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            events.put_rule(Name=rule_id, EventPattern=pattern, State="ENABLED")
            events.put_targets(Rule=rule_id, Targets=[{"Id": "tap", "Arn": arn}])
            for label, event, expected in cases.get(rule_id, []):
                entry = {"Source": event["source"], "DetailType": event["detail-type"],
                         "Detail": json.dumps(event["detail"]), "Resources": event["resources"]}
                failed = events.put_events(Entries=[entry])["FailedEntryCount"]
                check(failed == 0, f"{rule_id}: {label}: moto refused the sample event")
                got = bool(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"))
                if got:
                    sqs.purge_queue(QueueUrl=url)
                check(got == expected, f"{rule_id} (DrillPrincipalArns {drill_principals!r}): {label}: "
                                       f"{'matches' if got else 'does not match'}, expected "
                                       f"{'a match' if expected else 'none'} (pattern {pattern})")
            events.remove_targets(Rule=rule_id, Ids=["tap"])
            events.delete_rule(Name=rule_id)
            for target in rule["Properties"].get("Targets", []):
                transformer = target.get("InputTransformer")
                if not transformer:
                    continue
                text = resolver.resolve(transformer["InputTemplate"])
                event = cases[rule_id][0][1]
                try:
                    page = json.loads(render(text, transformer["InputPathsMap"], event))
                except (ValueError, KeyError) as e:
                    check(False, f"{rule_id}: the input transformer does not render JSON: {e}: {text}")
                    continue
                check(page.get("NewStateValue") == "ALARM" and page.get("AlarmName", "").startswith(STACK),
                      f"{rule_id}: the page is not shaped like an alarm notification: {page}")
    print(f"  event patterns, DrillPrincipalArns {drill_principals!r}: {sum(len(c) for c in cases.values())} sample "
          f"events against {len(rules)} rules (moto's event routing); the audit page renders as an alarm notification")


def main():
    template_file, policy_file, events_dir = map(Path, sys.argv[1:4])
    check_filter_policy(policy_file, events_dir)
    check_event_patterns(template_file, events_dir)
    if problems:
        print("paging check FAILED:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
