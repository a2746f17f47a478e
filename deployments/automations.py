#!/usr/bin/env python3
"""Alerting as code: notify when a `logistics-pipeline` run fails or crashes.

The notification goes through a saved notification block (Slack, Teams, a custom webhook,
e-mail, ...), found by its slug `<block-type>/<block-name>` when the automation is applied,
so the target is changed in the block, not here.

    # once: save the target (or create any notification block in the UI, Blocks -> +)
    python deployments/automations.py save-block --url https://hooks.slack.com/services/...
    # create or update the automation (idempotent)
    python deployments/automations.py apply [--block slack-webhook/logistics-alerts]
    python deployments/automations.py show
    python deployments/automations.py delete

The server is the one PREFECT_API_URL (or the active Prefect profile) points at.
`make automations` runs `apply`. The block slug defaults to $LOGISTICS_ALERT_BLOCK, else
`slack-webhook/logistics-alerts`. (`prefect automation create --from-file` needs the
block's id written in the file, which differs per server; that is why this is a script.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

AUTOMATION_NAME = "logistics-pipeline failed or crashed"
FLOW_NAME = "logistics-pipeline"
DEFAULT_BLOCK = os.environ.get("LOGISTICS_ALERT_BLOCK") or "slack-webhook/logistics-alerts"
STATES = ("Failed", "Crashed")

SUBJECT = "Prefect: {{ flow.name }} run {{ flow_run.name }} is {{ flow_run.state.name }}"
BODY = """\
Flow run {{ flow.name }}/{{ flow_run.name }} entered state {{ flow_run.state.name }} at {{ flow_run.state.timestamp }}.
Deployment: {{ deployment.name if deployment else "none (run outside a deployment)" }}
Parameters: {{ flow_run.parameters }}
Message: {{ flow_run.state.message }}
Logs and details: {{ flow_run|ui_url or ("flow run " ~ flow_run.id ~ " (set PREFECT_UI_URL on the server for a link)") }}
"""


class SetupError(Exception):
    """Something the person applying must fix; the message says what."""


def trigger(flow_name: str = FLOW_NAME) -> EventTrigger:
    """Fires on the first Failed or Crashed state of any run of the flow."""
    return EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
        expect={f"prefect.flow-run.{state}" for state in STATES},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def automation(block_document_id: UUID, name: str = AUTOMATION_NAME, flow_name: str = FLOW_NAME) -> AutomationCore:
    return AutomationCore(
        name=name,
        description=f"Notify through a notification block when a {flow_name} run fails or crashes.",
        enabled=True,
        trigger=trigger(flow_name),
        actions=[SendNotification(block_document_id=block_document_id, subject=SUBJECT, body=BODY)],
    )


async def resolve_block(slug: str) -> UUID:
    """The id of the block document `<block-type-slug>/<name>`, or of the only block called `<name>`."""
    async with get_client() as client:
        if "/" in slug:
            block_type, name = slug.split("/", 1)
            try:
                return (await client.read_block_document_by_name(name=name, block_type_slug=block_type)).id
            except ObjectNotFound:
                raise SetupError(
                    f"no {block_type} block named {name!r} on {client.api_url}: create it in the UI (Blocks -> +), "
                    f"or run `python deployments/automations.py save-block --block {slug} --url <webhook url>`"
                ) from None
        found = [doc for doc in await client.read_block_documents(include_secrets=False) if doc.name == slug]
        if len(found) != 1:
            kinds = ", ".join(f"{doc.block_type.slug}/{doc.name}" for doc in found if doc.block_type) or "none"
            raise SetupError(f"{len(found)} blocks are named {slug!r} (found: {kinds}); give the block as <block-type>/<name>")
        return found[0].id


async def apply(block: str, name: str = AUTOMATION_NAME, flow_name: str = FLOW_NAME) -> UUID:
    """Create the automation, or update the one with this name (extra copies are removed)."""
    wanted = automation(await resolve_block(block), name=name, flow_name=flow_name)
    async with get_client() as client:
        existing = await client.read_automations_by_name(name)
        if not existing:
            return await client.create_automation(wanted)
        keep, *extra = existing
        await client.update_automation(keep.id, wanted)
        for duplicate in extra:
            await client.delete_automation(duplicate.id)
        return keep.id


async def show(name: str = AUTOMATION_NAME) -> list[dict[str, Any]]:
    async with get_client() as client:
        return [a.model_dump(mode="json") for a in await client.read_automations_by_name(name)]


async def delete(name: str = AUTOMATION_NAME) -> int:
    async with get_client() as client:
        found = await client.read_automations_by_name(name)
        for item in found:
            await client.delete_automation(item.id)
        return len(found)


async def save_block(block: str, url: str) -> UUID:
    """Save a Slack webhook block (`slack-webhook/<name>`) or a JSON webhook (`custom-webhook/<name>`)."""
    from pydantic import SecretStr
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    block_type, _, name = block.partition("/")
    if not name:
        raise SetupError(f"give the block as <block-type>/<name>, e.g. slack-webhook/logistics-alerts (got {block!r})")
    if block_type == "slack-webhook":
        document = SlackWebhook(url=SecretStr(url))
    elif block_type == "custom-webhook":
        document = CustomWebhookNotificationBlock(name=name, url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"})
    else:
        raise SetupError(f"save-block makes slack-webhook or custom-webhook blocks; create a {block_type} block in the UI")
    return await document.asave(name, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    apply_ = commands.add_parser("apply", help="create or update the automation")
    apply_.add_argument("--block", default=DEFAULT_BLOCK, help=f"notification block, <block-type>/<name> (default {DEFAULT_BLOCK})")
    apply_.add_argument("--name", default=AUTOMATION_NAME, help="automation name")
    apply_.add_argument("--flow", default=FLOW_NAME, help="flow whose failed or crashed runs notify")
    show_ = commands.add_parser("show", help="print the automation as JSON")
    show_.add_argument("--name", default=AUTOMATION_NAME)
    delete_ = commands.add_parser("delete", help="delete the automation")
    delete_.add_argument("--name", default=AUTOMATION_NAME)
    save = commands.add_parser("save-block", help="save a Slack (slack-webhook/NAME) or JSON webhook (custom-webhook/NAME) block")
    save.add_argument("--block", default=DEFAULT_BLOCK, help=f"<block-type>/<name> (default {DEFAULT_BLOCK})")
    save.add_argument("--url", required=True, help="webhook URL")
    args = parser.parse_args(argv)

    try:
        if args.command == "apply":
            automation_id = asyncio.run(apply(args.block, args.name, args.flow))
            print(f"automation {args.name!r} ({automation_id}) notifies {args.block} when a {args.flow} run fails or crashes")
        elif args.command == "show":
            print(json.dumps(asyncio.run(show(args.name)), indent=2))
        elif args.command == "delete":
            print(f"deleted {asyncio.run(delete(args.name))} automation(s) named {args.name!r}")
        elif args.command == "save-block":
            block_id = asyncio.run(save_block(args.block, args.url))
            print(f"saved block {args.block} ({block_id})")
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
