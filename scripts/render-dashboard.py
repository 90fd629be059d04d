# Draws deploy/monitoring/grafana-dashboard.json's panels from a Prometheus
# (its own queries, through query_range) in Grafana's dark style, for a picture
# of the dashboard where no Grafana runs (docs/dashboard.png).
#   python3 scripts/render-dashboard.py http://127.0.0.1:9090 deploy/monitoring/grafana-dashboard.json out.png START END
# START and END are Unix seconds; needs matplotlib (Debian: python3-matplotlib).
import json, sys, urllib.parse, urllib.request, time
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.dates as mdates
from datetime import datetime, timezone

prom, dash_file, out, start, end = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
dash = json.load(open(dash_file))
panels = [p for p in dash["panels"] if p["type"] != "row"]
rows = [p for p in dash["panels"] if p["type"] == "row"]

def query(expr):
    expr = expr.replace("$__rate_interval", "15s")
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 2})
    with urllib.request.urlopen(prom + "/api/v1/query_range?" + q) as r:
        return json.load(r)["data"]["result"]

def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    import re
    return re.sub(r"\{\{[^}]*\}\}", "", out).strip() or "value"

bg, panel_bg, fg, grid = "#111217", "#181b1f", "#ccccdc", "#2c3235"
colors = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ff780a", "#96d98d", "#ffee52"]
# Grafana's grid: 24 columns; each panel's gridPos in units (h in 30 px rows).
maxy = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"])
W, Hunit = 24, 1
fig = plt.figure(figsize=(24, (maxy + 1.5) * 0.42), facecolor=bg)
fig.suptitle(dash["title"] + "   (dev stack, %s UTC)" % datetime.fromtimestamp(end, timezone.utc).strftime("%Y-%m-%d %H:%M"),
             color=fg, x=0.008, ha="left", fontsize=17, y=0.993)
HEAD = 1.5  # grid units above the first row, for the title
TOT = maxy + HEAD
def axes(gp):
    left, top = gp["x"] / W, 1 - (gp["y"] + HEAD) / TOT
    w, h = gp["w"] / W, gp["h"] / TOT
    padl, padr = 0.032, 0.006
    return fig.add_axes([left + padl, top - h + 0.022, w - padl - padr, h - 0.048])
for r in rows:
    gp = r["gridPos"]
    fig.text(0.008, 1 - (gp["y"] + HEAD) / TOT - 0.012, r["title"], color=fg, fontsize=13, weight="bold")
units = {"s": "s", "short": "", "ops": "/s", "reqps": " req/s"}
for p in panels:
    ax = axes(p["gridPos"])
    ax.set_facecolor(panel_bg)
    for s in ax.spines.values():
        s.set_color(grid)
    ax.tick_params(colors=fg, labelsize=8)
    ax.grid(color=grid, linewidth=0.6)
    ax.set_title(p["title"], color=fg, fontsize=10.5, loc="left")
    i = 0
    for t in p["targets"]:
        for series in query(t["expr"]):
            xs = [datetime.fromtimestamp(float(v[0]), timezone.utc) for v in series["values"]]
            ys = [float(v[1]) if v[1] not in ("NaN", "+Inf", "-Inf") else float("nan") for v in series["values"]]
            ax.plot(xs, ys, color=colors[i % len(colors)], linewidth=1.4, label=legend(t["legendFormat"], series["metric"]))
            i += 1
    unit = p["fieldConfig"]["defaults"].get("unit", "")
    if unit == "s":
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: "%.0f µs" % (v * 1e6) if 0 < abs(v) < 1e-3 else ("%.1f ms" % (v * 1e3) if 0 < abs(v) < 1 else "%g s" % v)))
    else:
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _, u=units.get(unit, ""): "%g%s" % (round(v, 2), u)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    if i:
        ax.legend(loc="upper left", fontsize=7.5, facecolor=panel_bg, edgecolor=grid, labelcolor=fg, ncol=min(i, 4))
    else:
        ax.text(0.5, 0.5, "No data", color=fg, ha="center", va="center", transform=ax.transAxes)
fig.savefig(out, dpi=72, facecolor=bg)
print("wrote", out)
