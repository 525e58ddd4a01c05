"""Ridership pages for transit staff (roles admin and transit): report, exports, factors."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from mimamori.hub.pages.access import audit, parts, require
from mimamori.hub.ridership import data, export, names, report

#: the service dates the page and the exports accept
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
#: the longest range one report covers
MAX_DAYS = 366


class FilterError(ValueError):
    """A query-string value the page cannot use: answered with 400 and the reason."""


def parse_filter(args: Any, latest: date) -> report.Filter:
    """The page's query string → a Filter.

    A date that is not ``YYYY-MM-DD`` or lies outside 2000–2099 raises FilterError; an
    unknown direction, day type or time band falls back to its default.
    """

    def day(name: str, default: date) -> date:
        text = str(args.get(name, "")).strip()
        if not text:
            return default
        try:
            value = date.fromisoformat(text)
        except ValueError:
            raise FilterError(f"{name}: {text[:40]!r} is not a date (YYYY-MM-DD)") from None
        if not FIRST_DAY <= value <= LAST_DAY:
            raise FilterError(f"{name}: {value} is outside {FIRST_DAY} to {LAST_DAY}")
        return value

    latest = min(max(latest, FIRST_DAY), LAST_DAY)  # a device's clock may be far off
    end = day("to", latest)
    start = day("from", end)
    if start > end:
        start, end = end, start
    direction = args.get("direction", "")
    return report.Filter(
        start=start,
        end=min(end, start + timedelta(days=MAX_DAYS)),
        route_id=str(args.get("route") or "")[:64] or None,
        direction_id=int(direction) if direction in ("0", "1") else None,
        day_type=args.get("day", "all") if args.get("day") in report.DAY_TYPES else "all",
        band=args.get("band", "all") if args.get("band") in report.BANDS else "all",
    )


bp = Blueprint("ridership", __name__, url_prefix="/ridership")
transit = require("admin", "transit")


def latest_day() -> date:
    rows = parts().store.events(kinds=["ridership.stop_visit"], limit=1)
    if rows:
        try:
            return date.fromisoformat(str(rows[0]["data"]["service_date"]))
        except (KeyError, ValueError):
            pass
    return date.today()


def feed() -> names.Names:
    return names.load(current_app.config.get("RIDERSHIP_GTFS"))


def selected() -> tuple[report.Filter, data.Visits]:
    f = parse_filter(request.args, latest_day())
    return f, data.load(parts().store, f.start, f.end, ends=feed().ends)


@bp.errorhandler(FilterError)
def bad_filter(e: FilterError) -> Any:
    if request.endpoint != "ridership.page":
        return Response(f"{e}\n", status=400, mimetype="text/plain")
    flash(f"Not shown: {e}", "error")
    return page_for(parse_filter({}, latest_day()), 400)


@bp.get("")
@transit
def page() -> Any:
    return page_for(parse_filter(request.args, latest_day()))


@bp.get("/label")
@transit
def label() -> Any:
    """Label crossings on a door clip (in the browser) to make a calibration truth file."""
    return render_template("ridership_label.html")


def page_for(f: report.Filter, status: int = 200) -> Any:
    store = parts().store
    known = feed()
    visits = data.load(store, f.start, f.end, ends=known.ends)
    # stops differ by route and direction: the page shows one pattern at a time
    routes = sorted({t.route_id for t in visits.trips + visits.under_way})
    route = f.route_id if f.route_id in routes else next(iter(routes), None)
    directions = sorted(
        {
            t.direction_id
            for t in visits.trips + visits.under_way
            if t.route_id == route and t.direction_id is not None
        }
    )
    direction = f.direction_id if f.direction_id in directions else next(iter(directions), None)
    f = replace(f, route_id=route, direction_id=direction)
    rep = report.build(report.select(visits.trips, f))
    return render_template(
        "ridership.html",
        f=f,
        rep=rep,
        routes=routes,
        names=known,
        untagged=visits.untagged,
        under_way=report.select(visits.under_way, f),
        factors=data.get_factors(store),
        vehicles=sorted({t.vehicle for t in visits.trips}),
        DAY_TYPES=report.DAY_TYPES,
        BANDS=report.BANDS,
        peak=max([s.p95_load for s in rep.stops] + [1]),
        busiest=max([max(s.on, s.off) for s in rep.stops] + [1]),
        od_max=float(rep.od.max()) if rep.od.size else 0.0,
    ), status


def download(body: str | bytes, mimetype: str, name: str) -> Response:
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get("/visits.csv")
@transit
def csv() -> Response:
    f, visits = selected()
    # BOM: Excel then reads the UTF-8 stop names right
    body = "\ufeff" + export.visits_csv(report.select(visits.trips, f))
    return download(body, "text/csv", f"ridership-{f.start}-{f.end}.csv")


@bp.get("/gtfs-ride.zip")
@transit
def gtfs_ride() -> Response:
    f, visits = selected()
    body = export.gtfs_ride(report.select(visits.trips, f), f)
    return download(body, "application/zip", f"gtfs-ride-{f.start}-{f.end}.zip")


@bp.post("/factors")
@transit
def factors() -> Any:
    form = request.form
    back = redirect(url_for("ridership.page") + "#factors")
    try:
        board, alight = float(form.get("board", "")), float(form.get("alight", ""))
    except ValueError:
        flash("Factors not saved: the factors must be numbers, e.g. 1.05", "error")
        return back
    try:
        data.set_factors(
            parts().store, form.get("vehicle", ""), board, alight, form.get("note", ""), g.user
        )
    except ValueError as e:
        flash(f"Factors not saved: {e}", "error")
        return back
    audit(
        "ridership.factors",
        form["vehicle"],
        f"on ×{board:g}, off ×{alight:g}: {form.get('note', '')}",
    )
    flash(f"Correction factors for {form['vehicle']} saved; every report uses them now.", "ok")
    return back
