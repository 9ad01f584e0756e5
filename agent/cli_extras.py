"""More `ftagent` subcommands: submit (queue and return the id), logs (--follow), feedback, config
show|init, slack; `--json` output for status, models and show; and every subcommand's example."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console

from agent.service import JobService
from agent.settings import SECRET_SETTINGS, settings_yaml

# one example per subcommand, shown at the end of its --help
EXAMPLES = {
    "run": 'ftagent run "fine-tune SmolLM2 on soil science" --docs papers/ --set training.epochs=3',
    "submit": 'ftagent submit "fine-tune SmolLM2 on soil science" --docs papers/   # then: ftagent worker',
    "status": "ftagent status 20260101-120000-soil-science-ab12 --json",
    "resume": "ftagent resume 20260101-120000-soil-science-ab12",
    "logs": "ftagent logs 20260101-120000-soil-science-ab12 --follow",
    "models": "ftagent models --json",
    "show": "ftagent show ft-smollm2-135m-soil-science-v1-20260101",
    "ask": 'ftagent ask ft-smollm2-135m-soil-science-v1-20260101 "What is loam?"',
    "eval": "ftagent eval ft-smollm2-135m-soil-science-v1-20260101 --set questions.jsonl",
    "feedback": ('ftagent feedback MODEL --question "What is loam?" --answer "A rock." --rating -1 '
                 '--correction "A soil of sand, silt and clay."'),
    "export": "ftagent export MODEL --format gguf --dtype q8_0",
    "push": "ftagent push ft-smollm2-135m-soil-science-v1-20260101 --repo alice/soil-smollm2   # HF_TOKEN set",
    "promote": "ftagent promote ft-smollm2-135m-soil-science-v2-20260101",
    "rollback": "ftagent rollback ft-smollm2-135m-soil-science",
    "delete": "ftagent delete ft-smollm2-135m-soil-science-v1-20260101",
    "serve": "ftagent serve --port 8000 --ab soil=VERSION_A:1,VERSION_B:1",
    "api": "ftagent api --port 8321",
    "worker": "ftagent worker --once",
    "chat": "ftagent chat --user alice",
    "mcp": 'ftagent mcp   # client config: {"command": "ftagent", "args": ["mcp"]}   |   ftagent mcp --http',
    "config": "ftagent config show   |   ftagent config init",
    "cancel": "ftagent cancel 20260101-120000-soil-science-ab12",
    "token": "ftagent token add alice   |   ftagent token list   |   ftagent token revoke alice",
    "slack": "SLACK_BOT_TOKEN=xoxb-... SLACK_SIGNING_SECRET=... ftagent slack --port 3000",
}
EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_ENVIRONMENT = 2, 3, 4, 5


# help for arguments declared without one, by their destination
ARGUMENT_HELP = {"host": "address to listen on", "port": "port to listen on", "job": "the job id",
                 "model": "a registered model version (ftagent models lists them)", "question": "the question",
                 "max_new_tokens": "longest answer, in tokens", "family_or_model": "a model family or version",
                 "threads": "CPU threads for training and inference", "name": "the user's name",
                 "token_command": "add, list or revoke",
                 "export_format": "safetensors: a merged model folder; gguf: one file for llama.cpp"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; an option's default after its help when it has a real one
    (None and False mean "not given"; options whose default comes from the job spec say it themselves)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def describe_commands(commands: argparse._SubParsersAction) -> None:
    """Every subcommand gets its help line as description (unless it has one), its example as epilog,
    and the formatter that shows defaults."""
    helps = {action.dest: action.help for action in commands._choices_actions}
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if action.help is None and action.dest in ARGUMENT_HELP:
                action.help = ARGUMENT_HELP[action.dest]
        parser.formatter_class = HelpFormatter
        parser.description = parser.description or (helps.get(name) or "").capitalize()
        if name in EXAMPLES:
            parser.epilog = f"example:\n  {EXAMPLES[name]}"


def add_extra_commands(commands: Any, add_job_arguments: Any) -> None:
    submit = commands.add_parser("submit", help="validate and queue a job, print its id, and return "
                                 "(`ftagent worker` or `ftagent api` runs it)")
    add_job_arguments(submit)
    logs = commands.add_parser("logs", help="a job's events, one line each")
    logs.add_argument("job", help="the job id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new events until the job ends")
    logs.add_argument("--json", action="store_true", help="one JSON object per event")
    feedback = commands.add_parser("feedback", help="rate a model's answer; a correction trains its next version")
    feedback.add_argument("model", help="a registered model version")
    feedback.add_argument("--question", required=True, help="the question asked")
    feedback.add_argument("--answer", required=True, help="the answer the model gave")
    feedback.add_argument("--rating", type=int, required=True, choices=(-1, 0, 1), help="-1 bad, 0 neutral, 1 good")
    feedback.add_argument("--correction", help="the right answer (becomes a training example)")
    config = commands.add_parser("config", help="the settings in effect, or a starting config file")
    config.add_argument("action", choices=("show", "init"),
                        help="show: resolved settings (secrets hidden); init: write <home>/config.yaml")
    config.add_argument("--force", action="store_true", help="init: replace an existing config.yaml")
    slack = commands.add_parser("slack", help="run the Slack bot (needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET)")
    slack.add_argument("--socket", action="store_true", help="Socket Mode (also needs SLACK_APP_TOKEN)")
    slack.add_argument("--host", default="127.0.0.1", help="HTTP mode: address for Slack's events")
    slack.add_argument("--port", type=int, default=3000, help="HTTP mode: port for /slack/events")


def add_json_flags(commands: Any) -> None:
    for name in ("status", "models", "show"):
        commands.choices[name].add_argument("--json", action="store_true", help="machine-readable JSON output")


def print_json(console: Console, value: Any) -> int:
    console.print_json(json.dumps(value, default=str))
    return 0


def json_output(service: JobService, console: Console, args: argparse.Namespace) -> int | None:
    """status/models/show with --json; None when JSON was not asked for."""
    if not getattr(args, "json", False) or args.command not in ("status", "models", "show"):
        return None
    if args.command == "status":
        value: Any = service.status(args.job) if args.job else [r.to_dict() for r in service.list_jobs()]
    elif args.command == "models":
        value = [version.to_dict() for version in service.models()]
    else:
        value = {**service.model(args.model).to_dict(), "card": service.model_card(args.model)}
    return print_json(console, value)


def dispatch_extra(service: JobService, console: Console, args: argparse.Namespace) -> int | None:
    """Run one of this module's commands; None when the command is not one of them."""
    handlers = {"logs": _logs, "feedback": _feedback, "config": _config, "slack": _slack}
    handler = handlers.get(args.command)
    return handler(service, console, args) if handler else json_output(service, console, args)


def _logs(service: JobService, console: Console, args: argparse.Namespace) -> int:
    for event in service.events(args.job, follow=args.follow):
        if args.json:
            console.print(json.dumps(event, default=str), highlight=False, markup=False, soft_wrap=True)
        else:
            when = datetime.fromtimestamp(event["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")
            console.print(f"{when}  {event['phase']:>10}  {event['message']}", highlight=False, markup=False,
                          soft_wrap=True)
    return 0


def _feedback(service: JobService, console: Console, args: argparse.Namespace) -> int:
    from tools.stores.feedback import FeedbackError

    try:
        item = service.feedback(args.model, args.question, args.answer, args.rating, args.correction)
    except FeedbackError as error:
        console.print(f"[red]bad feedback:[/red] {error}", highlight=False)
        return EXIT_BAD_INPUT
    console.print(f"feedback recorded for {args.model} (rating {item.rating}"
                  f"{', with a correction for its next version' if item.correction else ''})", highlight=False)
    return 0


def _config(service: JobService, console: Console, args: argparse.Namespace) -> int:
    settings = service.settings.model_dump(mode="json")
    if args.action == "show":  # each value with where it came from, secrets as ***
        console.print(settings_yaml(service.settings), highlight=False, markup=False, soft_wrap=True, end="")
        return 0
    path = service.settings.layout.config_file
    if path.exists() and not args.force:
        console.print(f"[red]refused:[/red] {path} exists (--force replaces it)", highlight=False)
        return EXIT_BAD_INPUT
    lines = ["# ftagent settings (explicit > FTAGENT_* environment > this file > default).",
             "# Uncomment a line to change it.", ""]
    lines += [f"# {line}" for line in yaml.safe_dump(
        {k: v for k, v in settings.items() if k not in ("home", *SECRET_SETTINGS)}, sort_keys=False).splitlines()]
    path.write_text("\n".join(lines) + "\n")
    console.print(f"wrote {path}", highlight=False)
    return 0


def _slack(service: JobService, console: Console, args: argparse.Namespace) -> int:
    from agent.slack_bot import SlackTokensMissing, run_slack_bot

    try:
        run_slack_bot(service, args.socket, args.host, args.port)
    except SlackTokensMissing as error:
        console.print(f"[red]cannot start:[/red] {error}", highlight=False)
        return EXIT_ENVIRONMENT
    return 0
