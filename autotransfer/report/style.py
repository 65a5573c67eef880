"""The report's stylesheet, inlined into the page: system fonts only, nothing fetched."""

CSS = """
:root {
  --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --soft: #f9fafb; --card: #ffffff;
  --accent: #2563eb; --pick: #d62728; --good: #059669; --warn: #b45309; --bad: #b91c1c;
}
* { box-sizing: border-box; }
html { background: #f3f4f6; }
body {
  margin: 0; color: var(--ink); line-height: 1.45; font-size: 14px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", sans-serif;
}
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
header.top {
  background: linear-gradient(135deg, #0f172a 0%, #1e3a8a 100%); color: #f8fafc;
  padding: 28px 0 24px;
}
.wrap { max-width: 1240px; margin: 0 auto; padding: 0 28px; }
.brand { font-size: 12px; letter-spacing: .12em; text-transform: uppercase; color: #93c5fd; }
header h1 { margin: 4px 0 2px; font-size: 30px; font-weight: 700; letter-spacing: -.01em; }
header .sub { color: #cbd5e1; margin: 0 0 16px; word-break: break-all; }
.pickline { font-size: 16px; margin: 0 0 18px; }
.pickline b { color: #fff; }
.pickline .tag { background: var(--pick); color: #fff; border-radius: 4px; padding: 1px 7px;
  font-size: 12px; font-weight: 700; margin-right: 8px; vertical-align: 1px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: rgba(255,255,255,.08); border: 1px solid rgba(255,255,255,.14);
  border-radius: 10px; padding: 10px 16px; min-width: 140px; }
.card .k { font-size: 11px; text-transform: uppercase; letter-spacing: .08em; color: #93c5fd; }
.card .v { font-size: 22px; font-weight: 700; font-variant-numeric: tabular-nums; }
.card .s { font-size: 12px; color: #cbd5e1; }
nav.toc { background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0;
  z-index: 5; }
nav.toc .wrap { display: flex; flex-wrap: wrap; gap: 4px 18px; padding-top: 9px;
  padding-bottom: 9px; }
nav.toc a { color: #374151; text-decoration: none; font-size: 13px; }
nav.toc a:hover { color: var(--accent); }
main { padding: 22px 0 40px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 20px 24px; margin: 0 0 20px; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
section h2 { margin: 0 0 4px; font-size: 19px; }
section h3 { margin: 18px 0 8px; font-size: 15px; }
p.lead { margin: 0 0 14px; color: var(--muted); }
.note { background: #fffbeb; border: 1px solid #fde68a; color: #78350f; border-radius: 8px;
  padding: 8px 12px; margin: 8px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; color: #374151; white-space: nowrap;
  position: sticky; top: 0; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
tbody tr:hover td { background: #eff6ff; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.pick td { background: #fef2f2 !important; }
tr.pick td:first-child { box-shadow: inset 3px 0 0 var(--pick); }
td.best { font-weight: 700; color: #1d4ed8; }
td.nowrap { white-space: nowrap; }
table.dense th, table.dense td { padding: 5px 7px; font-size: 12.5px; }
table.dense th { white-space: normal; vertical-align: bottom; }
.kv { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 0 28px; }
.kv table td:first-child { color: var(--muted); width: 44%; }
.badge { display: inline-block; border-radius: 999px; padding: 0 8px; font-size: 11.5px;
  font-weight: 600; line-height: 18px; }
.state-complete { background: #d1fae5; color: #065f46; }
.state-pruned { background: #fef3c7; color: #92400e; }
.state-failed { background: #fee2e2; color: #991b1b; }
.state-running, .state-waiting { background: #e0e7ff; color: #3730a3; }
.short { background: #dbeafe; color: #1e40af; }
.params { color: #374151; }
.err { color: var(--bad); font-size: 12px; }
figure { margin: 8px 0 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 6px; }
.bar { background: #e5e7eb; border-radius: 4px; height: 10px; width: 90px;
  display: inline-block; vertical-align: middle; overflow: hidden; }
.bar > span { display: block; height: 100%; background: var(--good); }
.two { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 24px;
  align-items: start; }
@media (max-width: 900px) { .two { grid-template-columns: 1fr; } }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(132px, 1fr));
  gap: 12px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: var(--soft);
  text-align: center; font-size: 12px; }
.tile img { width: 112px; height: 112px; object-fit: contain; background: #fff;
  border-radius: 4px; display: block; margin: 0 auto 6px; }
.tile .t { color: var(--good); font-weight: 600; word-break: break-word; }
.tile .p { color: var(--bad); font-weight: 600; word-break: break-word; }
.tile .c { color: var(--muted); font-variant-numeric: tabular-nums; }
.tile .f { color: var(--muted); font-size: 11px; word-break: break-all; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 0 0 28px; }
"""
