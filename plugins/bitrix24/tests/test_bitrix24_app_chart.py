"""The SVG bar chart: accessible, escaped, deterministic, proportional."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from gateway_bitrix24.app.chart import HEIGHT, Bar, _nice_max, bar_chart, legend

SVG = "{http://www.w3.org/2000/svg}"


def chart(bars: list[Bar], title: str = "Calls per day", summary: str = "10 written, 2 failed") -> str:
    return bar_chart(bars, title=title, summary=summary, written_label="Written", failed_label="Failed")


def test_accessible_and_well_formed() -> None:
    svg = chart([Bar("Mon", 8, 2), Bar("Tue", 2, 0)])
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Calls per day: 10 written, 2 failed"
    assert root.find(f"{SVG}title").text == "Calls per day"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "10 written, 2 failed"  # type: ignore[union-attr]
    tips = [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")]  # type: ignore[union-attr]
    assert tips == ["Mon: Written 8, Failed 2", "Tue: Written 2, Failed 0"]
    assert "<script" not in svg and "on" not in re.findall(r"\s(on)[a-z]+=", svg)


def test_text_is_escaped() -> None:
    evil = '</title><script>x</script>"&'
    svg = chart([Bar(evil, 1, 0, detail=evil)], title=evil, summary=evil)
    assert "<script>" not in svg
    ET.fromstring(svg)  # still well-formed
    assert svg.count("&lt;/title&gt;&lt;script&gt;") == 6  # aria-label (title and summary), title, desc, tip, axis


def test_bars_are_proportional_and_stacked() -> None:
    svg = chart([Bar("a", 40, 10), Bar("b", 20, 0)])
    rects = {(r.get("class"), i): r for i, r in enumerate(ET.fromstring(svg).iter(f"{SVG}rect"))}
    written_a, failed_a, written_b = (r for _, r in sorted(rects.items(), key=lambda kv: kv[0][1]))
    h = {k: float(r.get("height") or 0) for k, r in (("wa", written_a), ("fa", failed_a), ("wb", written_b))}
    assert h["wa"] == pytest.approx(2 * h["wb"]) and h["wa"] == pytest.approx(4 * h["fa"])
    assert float(failed_a.get("y") or 0) + h["fa"] == pytest.approx(float(written_a.get("y") or 0))
    assert failed_a.get("class") == "failed" and written_b.get("class") == "written"


def test_deterministic_and_empty_safe() -> None:
    bars = [Bar(str(h), h % 5, h % 2) for h in range(24)]
    assert chart(bars) == chart(bars)
    empty = chart([], summary="No calls")
    root = ET.fromstring(empty)
    assert not list(root.iter(f"{SVG}rect")) and f'viewBox="0 0 480 {HEIGHT}"' in empty


def test_labels_are_thinned_for_many_bars() -> None:
    svg = chart([Bar(f"{h}:00", 1, 0) for h in range(24)])
    labels = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if (t.get("text-anchor") == "middle")]
    assert labels == [f"{h}:00" for h in range(0, 24, 3)]


def test_scale_and_validation() -> None:
    assert [_nice_max(v) for v in (0, 1, 3, 7, 10, 11, 180, 501)] == [1, 1, 5, 10, 10, 20, 200, 1000]
    with pytest.raises(ValueError):
        Bar("x", -1, 0)


def test_legend_escapes() -> None:
    assert "&lt;b&gt;" in legend("<b>", "failed") and 'aria-hidden="true"' in legend("a", "b")
