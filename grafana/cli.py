"""`heatstream grafana`: push the provisioning to a Grafana, check its queries on InfluxDB.

Thin: parse options, build the clients, call ``push.push`` or ``check``, print. Secrets
are options with environment fallbacks and are never echoed.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import SecretStr

app = typer.Typer(
    help=(
        "Grafana provisioning as code: the datasource, dashboards and alert rules under "
        "grafana/ (loaded by the docker-compose Grafana at start). 'push' uploads them to "
        "another Grafana through its HTTP API; 'check' runs every query on InfluxDB."
    ),
    no_args_is_help=True,
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.command("push")
def push_command(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option(
            "--url", envvar="GRAFANA_URL", help="Grafana base URL, e.g. https://grafana.example.com"
        ),
    ],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="GRAFANA_TOKEN",
            help="service-account token (Editor or Admin)",
            show_default=False,
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", envvar="GRAFANA_USER", help="basic-auth user (instead of --token)"),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "--password", envvar="GRAFANA_PASSWORD", help="basic-auth password", show_default=False
        ),
    ] = None,
    folder_uid: Annotated[
        str, typer.Option("--folder-uid", help="uid of the folder for dashboards and rules")
    ] = "heatstream",
    datasource_url: Annotated[
        str | None,
        typer.Option(
            "--datasource-url",
            help="InfluxDB URL as Grafana reaches it (default: the datasource file's)",
        ),
    ] = None,
    influx_token: Annotated[
        str | None,
        typer.Option(
            "--influx-token",
            envvar="INFLUX_TOKEN",
            help=(
                "InfluxDB token for the datasource (default: heatstream's influxdb.token); "
                "prefer a read-only one"
            ),
            show_default=False,
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            envvar="HEATSTREAM_ALERT_WEBHOOK_URL",
            help="where the contact point POSTs alerts",
            show_default=False,
        ),
    ] = None,
    webhook_token: Annotated[
        str | None,
        typer.Option(
            "--webhook-token",
            envvar="HEATSTREAM_ALERT_WEBHOOK_TOKEN",
            help="bearer token for the webhook",
            show_default=False,
        ),
    ] = None,
    runbook_base: Annotated[
        str | None,
        typer.Option(
            "--runbook-base",
            help=(
                "URL of the heatstream repository tree: rules get runbook_url links into "
                "docs/ops.md"
            ),
        ),
    ] = None,
    editable: Annotated[
        bool,
        typer.Option(
            "--editable", help="leave pushed alert rules and contact points editable in the UI"
        ),
    ] = False,
    update_secrets: Annotated[
        bool,
        typer.Option(
            "--update-secrets",
            help="resend secrets (Grafana never shows them, so changes go unseen)",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only read Grafana and report what would change")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds per HTTP request")] = 10.0,
) -> None:
    """Create or update the datasource, folder, dashboards, alert rules, contact point and
    notification policy on the Grafana at --url. Idempotent: a second push writes nothing."""
    from grafana_client import GrafanaApi

    from heatstream.cli import settings_of
    from heatstream.grafana.files import load
    from heatstream.grafana.push import PushError, PushOptions, push

    if token and user:
        raise typer.BadParameter(
            "give either --token or --user/--password, not both", param_hint="--token"
        )
    influx = settings_of(ctx).influxdb
    secrets: dict[str, SecretStr] = {}
    influx_secret = SecretStr(influx_token) if influx_token else influx.token
    if influx_secret is not None:
        secrets["INFLUX_TOKEN"] = influx_secret
    if webhook_url:
        secrets["HEATSTREAM_ALERT_WEBHOOK_URL"] = SecretStr(webhook_url)
    if webhook_token:
        secrets["HEATSTREAM_ALERT_WEBHOOK_TOKEN"] = SecretStr(webhook_token)
    options = PushOptions(
        folder_uid=folder_uid,
        datasource_url=datasource_url,
        secrets=secrets,
        influx_user=None if influx_secret is not None else influx.username,
        influx_password=None if influx_secret is not None else influx.password,
        runbook_base=runbook_base,
        editable=editable,
        update_secrets=update_secrets,
        dry_run=dry_run,
    )
    credential: str | tuple[str, str] | None = token or ((user, password or "") if user else None)
    api = GrafanaApi.from_url(url, credential=credential, timeout=timeout)
    try:
        changes = push(api, load(), options)
    except PushError as exc:
        raise _fail(f"grafana push to {url} failed: {exc}") from exc
    for change in changes:
        typer.echo(change.line(dry_run))
    counts = {
        a: sum(c.action == a for c in changes)
        for a in ("created", "updated", "unchanged", "skipped")
    }
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    typer.echo(("dry run: " if dry_run else "") + summary)


@app.command("check")
def check_command(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", help="time range of the dashboards, back from now")
    ] = "6h",
    interval: Annotated[
        str, typer.Option("--interval", help="$__interval to use (panels' minimum wins)")
    ] = "1m",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="print every expanded query")
    ] = False,
) -> None:
    """Run every dashboard and alert-rule query on the configured InfluxDB (what Grafana
    would do) and report errors, series counts and which alert instances would fire."""
    from heatstream.cli import settings_of
    from heatstream.grafana.check import InfluxQL, QueryFailed, check_dashboards, check_rules
    from heatstream.grafana.queries import duration_ms

    try:
        duration_ms(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc
    influx = settings_of(ctx).influxdb
    client = InfluxQL(
        influx.url,
        influx.database,
        token=influx.token.get_secret_value() if influx.token else None,
        username=influx.username,
        password=influx.password.get_secret_value() if influx.password else None,
    )
    with client:
        try:
            results = check_dashboards(client, time_from=f"now() - {since}", interval=interval)
            rules = check_rules(client)
        except QueryFailed as exc:
            raise _fail(f"InfluxDB {influx.url} database {influx.database!r}: {exc}") from exc
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            typer.secho(f"ERROR  {result.where}: {result.error}", fg=typer.colors.RED)
        else:
            typer.echo(f"ok     {result.where}: {len(result.series)} series, {result.rows()} rows")
        if verbose or result.error:
            typer.echo(f"       {result.query}")
    for rule in rules:
        if rule.firing:
            firing = "; ".join(
                ", ".join(f"{k}={v}" for k, v in labels) or "(no labels)"
                for labels in sorted(rule.firing)
            )
            typer.echo(f"FIRING {rule.rule_uid}: {firing}")
        else:
            state = "no data" if rule.no_data else f"{len(rule.values)} instance(s) normal"
            typer.echo(f"normal {rule.rule_uid}: {state}")
    if failed:
        raise _fail(f"{failed} of {len(results)} queries failed")
