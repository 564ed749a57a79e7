"""The app's pages rendered from plain data: escaping, tokens in every form, who sees what."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from app_samples import KEY, MEMBER, NOW, admin_page, user_page

from gateway_bitrix24.app import token
from gateway_bitrix24.app.render import render_admin, render_error, render_install, render_privacy, render_user
from gateway_bitrix24.app.token import Identity, verify
from gateway_bitrix24.app.views import ACTION_PATHS, ErrorPage, Frame, Links, MappingRow, PrivacyPage, WebexUser

T = NOW.timestamp()
ADMIN = Identity(MEMBER, 1, True, "en")
USER = Identity(MEMBER, 7, False, "de")
EVIL = '<script>alert(1)</script>"\'&'


class Page(HTMLParser):
    """Forms with their fields, controls with their labels, scripts, links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []
        self.controls: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self.links: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "fields": {}})
        elif tag in ("input", "select", "textarea", "button"):
            if tag == "input" and a.get("type") == "hidden":
                assert self.forms, "hidden field outside a form"
                self.forms[-1]["fields"][a["name"]] = a.get("value")  # type: ignore[index]
            else:
                self.controls.append({"tag": tag, **a})
        elif tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        elif tag == "script":
            self.scripts.append(a)
            self._in_script = True
        elif tag == "a":
            self.links.append(a.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


def admin_frame(**kw: object) -> Frame:
    return Frame.signed(KEY, ADMIN, now=T, **kw)


def user_frame(**kw: object) -> Frame:
    return Frame.signed(KEY, USER, now=T, **kw)


def all_pages() -> list[str]:
    return [render_admin(admin_page(), admin_frame()), render_admin(admin_page(connected=False, failed=False),
            admin_frame()), render_user(user_page(), user_frame()), render_user(user_page(logged_in=False),
            admin_frame()), render_privacy(PrivacyPage(), user_frame()), render_error(ErrorPage("expired")),
            render_install(Frame(lang="de"))]


def test_every_form_posts_to_its_action_with_its_own_token() -> None:
    html = render_admin(admin_page(), admin_frame())
    page = Page(html)
    assert {f["action"] for f in page.forms} == {Links().action(p) for p in
                                                  (token.PLACETEL_DISCONNECT, token.SETTINGS, token.MAPPING, token.RETRY)}
    by_path = {v: k for k, v in ACTION_PATHS.items()}
    for form in page.forms:
        assert form["method"] == "post"
        purpose = by_path[str(form["action"]).removeprefix(Links().base)]
        fields = form["fields"]
        assert isinstance(fields, dict)
        claims = verify(KEY, fields["t"], purpose, now=T)
        assert claims.identity == ADMIN


@pytest.mark.parametrize("html", all_pages())
def test_every_control_has_a_label_and_no_script_is_inline(html: str) -> None:
    page = Page(html)
    for control in page.controls:
        if control["tag"] == "button":
            continue
        assert control.get("id") in page.labels, control
    assert not page.inline_script
    assert all(s.get("src") for s in page.scripts)
    assert "style=" not in html and "<style" not in html  # CSP: style-src 'self'
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers


def test_values_from_outside_are_escaped() -> None:
    page = admin_page()
    page = replace(page, webex_users=(WebexUser(EVIL, EVIL, EVIL),),
                   mapping=(MappingRow("c1.u1", EVIL, EVIL, EVIL, EVIL, None),))
    html = render_admin(page, admin_frame())
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;" in html
    user = render_user(replace(user_page(), name=EVIL, webex_login_url='/apps/webex/login?"><x'), user_frame())
    assert "<script>alert" not in user and '"><x' not in user
    for link in ("javascript:alert(1)", "//evil.example/login", "http://plain.example/"):
        with pytest.raises(ValueError):
            render_user(replace(user_page(), webex_login_url=link), user_frame())


def test_a_user_who_is_not_an_administrator_sees_no_administrator_controls() -> None:
    html = render_user(user_page(), user_frame())
    page = Page(html)
    actions = {f["action"] for f in page.forms}
    assert actions == {Links().action(token.ERASE_ME)}
    assert 'href="/apps/webex/logout?t=xyz" target="_blank" rel="noopener noreferrer"' in html
    assert Links().home + "?" not in " ".join(page.links)  # no link to the administrator's page
    with pytest.raises(ValueError):
        render_admin(admin_page(), user_frame())


def test_the_user_page_offers_login_in_a_new_tab_when_logged_out() -> None:
    html = render_user(user_page(logged_in=False), user_frame())
    assert 'href="/apps/webex/login?t=xyz" target="_blank" rel="noopener noreferrer"' in html
    assert "/apps/webex/logout" not in html
    assert "Die App speichert nichts über Sie." in html


def test_navigation_carries_the_view_token_only() -> None:
    frame = admin_frame()
    page = Page(render_privacy(PrivacyPage(), frame))
    nav = [link for link in page.links if link.startswith(Links().base)]
    assert nav and all(link.endswith("?t=" + frame.tokens[token.VIEW]) for link in nav)


def test_the_error_page_carries_nothing() -> None:
    html = render_error(ErrorPage("foreign"), Frame(lang="de"))
    page = Page(html)
    assert not page.forms and not [link for link in page.links if "?t=" in link]
    assert "anderen Bitrix24-Portal" in html
    with pytest.raises(ValueError):
        render_error(ErrorPage("expired"), admin_frame())


def test_privacy_page_states_the_retention() -> None:
    html = render_privacy(PrivacyPage(retention_days=3), Frame(lang="en"))
    assert "Encrypted, for 3 days" in html and "Automatically after 3 days" in html
    assert "Never kept" in html


def test_notices_and_problems_are_text_keys() -> None:
    html = render_admin(admin_page(), admin_frame(notice="notice.saved", problem="problem.placetel_key_refused"))
    assert 'role="status">Settings saved.' in html
    assert 'role="alert">Placetel did not accept this API key.' in html
    with pytest.raises(KeyError):
        render_admin(admin_page(), admin_frame(notice="<b>raw text</b>"))


def test_admin_page_shows_what_to_paste_into_placetel_and_the_status() -> None:
    html = render_admin(admin_page(), admin_frame())
    assert 'value="https://gateway.example.eu/hooks/placetel/c_8f2k1x"' in html
    assert 'value="pt-7Q2vX9mL4sK8"' in html
    assert 'role="img"' in html and "ERROR_CORE" in html
    assert "Retry the event received Nov 28, 2026, 11:30 UTC" in html
    assert "compared with the call list Nov 28, 2026, 14:21 UTC" in html  # reconciliation
    assert "The comparison with the call list is failing" in html
    fresh = render_admin(admin_page(connected=False, failed=False), admin_frame())
    assert 'name="api_key"' in fresh and "Nothing failed." in fresh


def test_bx24_script_only_when_asked() -> None:
    assert "api.bitrix24.com" in render_install(Frame())
    assert "api.bitrix24.com" not in render_privacy(PrivacyPage(), Frame(bx24=False))
    with pytest.raises(ValueError):
        render_install(Frame(bx24=False))


def test_rendering_is_deterministic() -> None:
    assert render_admin(admin_page(), admin_frame()) == render_admin(admin_page(), admin_frame())


def test_with_no_responsible_user_chosen_the_page_says_the_installer_gets_the_calls() -> None:
    page = admin_page()
    html = render_admin(replace(page, settings=replace(page.settings, responsible_user_id=None)), admin_frame())
    assert '<option value="" selected>The user who installed the app</option>' in html
    german = render_admin(replace(page, settings=replace(page.settings, responsible_user_id=None)),
                          Frame.signed(KEY, Identity(MEMBER, 1, True, "de"), now=T))
    assert '<option value="" selected>Die Person, die die App installiert hat</option>' in german
