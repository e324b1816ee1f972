"""NetInfo Manager driven by a real browser (issue #12): Playwright with Debian's chromium
against ``netinfo-web`` serving a real nibindd's domains on loopback.

Clicked through: the lock (log in), a new user record, values edited and reordered, a
stale-instance conflict provoked and reported, a subtree exported and imported again, a
search, the lazy tree and the live filter, keyboard use. Every page visited passes
:func:`check_accessibility` (labelled controls, alt text, landmarks, heading order,
contrast of the palette in light and dark mode). Screenshots go to the test's temporary
directory; with ``NETINFO_WEB_SCREENSHOT=PATH`` the browse page's is also copied to PATH
(how docs/web-manager.png, shown in the README, is made).

Skipped, saying why, only when ``/usr/bin/chromium`` or the playwright package is missing
(``.ci/run`` installs both). Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from netinfo.client.raw import raw_from_text

from .conftest import free_port, served_domains, wait_listening
from .test_web import PASSWORD, ensure
from .test_web import admin as _admin

CHROMIUM = "/usr/bin/chromium"

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:   # pragma: no cover - reported as a skip below
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None,
                       reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


# -- servers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dom(tmp_path_factory):
    with served_domains(tmp_path_factory, "webui") as d:
        async def setup(c):
            await ensure(c, "/users", [("name", ["bob"]), ("uid", ["502"]),
                                       ("passwd", [_hash("bobpw")])])
            await ensure(c, "/users", [("name", ["alice"]), ("uid", ["501"]),
                                       ("passwd", [_hash(PASSWORD)])])
            await ensure(c, "/groups", [("name", ["admin"]), ("gid", ["80"]),
                                        ("users", ["bob"])])
        admin(setup)
        yield d


def admin(fn, domain: str = "."):
    """As the local superuser, on a thread of its own: Playwright's sync API keeps an event
    loop running on this one."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(_admin, fn, domain).result()


def _hash(pw: str) -> str:
    from netinfo.passwords import hash_password
    return hash_password(pw)


@pytest.fixture(scope="module")
def web(dom):
    """``netinfo-web`` as its console script runs it, on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "netinfo.web.server", "--domain", ".",
                             "--bind", f"127.0.0.1:{port}"], env=dom.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("netinfo-web: serving . on http://127.0.0.1:"), first
    wait_listening(proc, port, 20, "netinfo-web")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log = proc.stderr.read()
    proc.stderr.close()
    # credentials never reach the server's log
    assert PASSWORD not in log and "bobpw" not in log


#: Chromium talks to nothing but the loopback server under test: every background service
#: (updates, sync, safe browsing, metrics, DNS prefetch, ...) off, no proxy, and a host
#: resolver that answers every name "not found" (tests send only to loopback; issue 17).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-domain-reliability", "--dns-prefetch-disable", "--no-pings",
    "--disable-client-side-phishing-detection", "--safebrowsing-disable-auto-update",
    "--disable-default-apps", "--disable-extensions", "--no-first-run",
    "--no-default-browser-check", "--metrics-recording-only", "--disable-breakpad",
    "--disable-features=OptimizationHints,MediaRouter,Translate,NetworkTimeServiceQuerying,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "InterestFeedContentSuggestions,DialMediaRouteProvider,AsyncDns",
    "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def browser(web):   # after the servers: their set-up runs asyncio on this thread
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser, web):
    ctx = browser.new_context(base_url=web, viewport={"width": 1280, "height": 860},
                              accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    # a 409 or 403 page is an answer, not an error; a script error or a CSP violation is
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error"
          and not m.text.startswith("Failed to load resource") else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    # no script error, and no Content-Security-Policy violation, on any page
    assert not errors, errors


# -- accessibility -----------------------------------------------------------------------------

#: Collects what the checks need from the page (run in the browser).
_AUDIT = """() => {
  const out = {unlabelled: [], noAlt: [], unnamedButtons: [], headings: [], landmarks: {},
               colors: []};
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length)
                        || el.closest('details:not([open])');
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const ok = (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`))
      || el.closest('label') || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby');
    if (!ok) out.unlabelled.push(el.outerHTML.slice(0, 120));
  }
  for (const img of document.querySelectorAll('img')) {
    if (!img.hasAttribute('alt')) out.noAlt.push(img.outerHTML.slice(0, 120));
  }
  for (const b of document.querySelectorAll('button, a[href]')) {
    const name = (b.getAttribute('aria-label') || b.textContent || '').trim();
    if (!name && visible(b)) out.unnamedButtons.push(b.outerHTML.slice(0, 120));
  }
  for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    out.headings.push(Number(h.tagName[1]));
  }
  for (const sel of ['header', 'nav', 'main', 'footer']) {
    out.landmarks[sel] = document.querySelectorAll(sel).length;
  }
  const bgOf = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c;
    }
    return getComputedStyle(document.documentElement).backgroundColor || 'rgb(255,255,255)';
  };
  const sample = ['body', 'main h1', '.where', '.mainnav a', '.lock', 'button.primary',
                  '.notice.ok', '.notice.error', '.count', 'a[href]', '.help', 'label',
                  'thead th', '.values li', '.idx', 'summary', 'button.danger', 'code'];
  for (const sel of sample) {
    const el = document.querySelector(sel);
    if (el && visible(el)) {
      out.colors.push([sel, getComputedStyle(el).color, bgOf(el)]);
    }
  }
  return out;
}"""


def _rgb(text: str) -> tuple[float, float, float]:
    nums = [float(x) for x in re.findall(r"[\d.]+", text)[:3]]
    return nums[0], nums[1], nums[2]


def _luminance(rgb: tuple[float, float, float]) -> float:
    def ch(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (ch(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(_rgb(fg)), _luminance(_rgb(bg))), reverse=True)
    return (a + 0.05) / (b + 0.05)


def check_accessibility(page: Page) -> None:
    """Our own axe-like checks (WCAG 2 AA where it applies): every form control has a
    label, images have alt text, buttons and links have names, one header, main and footer
    and at least one nav, one h1 first and no skipped heading level, and text contrast of
    at least 4.5:1 for the palette's pairs shown on the page."""
    got = page.evaluate(_AUDIT)
    where = page.url
    assert not got["unlabelled"], (where, got["unlabelled"])
    assert not got["noAlt"], (where, got["noAlt"])
    assert not got["unnamedButtons"], (where, got["unnamedButtons"])
    lm = got["landmarks"]
    assert lm["main"] == 1 and lm["header"] == 1 and lm["footer"] == 1 and lm["nav"] >= 1, \
        (where, lm)
    heads = got["headings"]
    assert heads and heads[0] == 1 and heads.count(1) == 1, (where, heads)
    for prev, cur in itertools.pairwise(heads):
        assert cur <= prev + 1, (where, heads)
    for sel, fg, bg in got["colors"]:
        ratio = contrast(fg, bg)
        assert ratio >= 4.5, (where, sel, fg, bg, round(ratio, 2))
    assert page.title().endswith("NetInfo Manager")


def visit(page: Page, shots: Path, name: str, *, dark: bool = True) -> None:
    """Check the page in light and dark mode, with a screenshot of each."""
    check_accessibility(page)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    if dark:
        page.emulate_media(color_scheme="dark")
        check_accessibility(page)
        page.screenshot(path=str(shots / f"{name}-dark.png"), full_page=True)
        page.emulate_media(color_scheme="light")


def server_props(path: str):
    async def go(c):
        return (await c.read(await c.pathsearch(path)))[1]
    return admin(go)


# -- the walk-through --------------------------------------------------------------------------

def test_log_in_create_a_user_edit_and_reorder(page, shots):
    page.goto("/browse?d=.")
    expect(page.get_by_role("heading", level=1)).to_have_text("/")
    visit(page, shots, "root")
    # keyboard: the first Tab reaches the skip link, which moves focus to the content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.get_by_role("link", name="Click the lock to make changes").click()
    expect(page).to_have_title(re.compile("^Authenticate"))
    visit(page, shots, "login", dark=False)
    page.get_by_label("User name").fill("bob")
    page.get_by_label("Password").fill("bobpw")
    page.get_by_role("button", name="Authenticate").click()
    expect(page.locator(".lock.open")).to_contain_text("bob")
    expect(page.get_by_role("status").first).to_contain_text("Authenticated as bob")

    page.locator(".tree a", has_text=re.compile("^users$")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("/users")
    page.get_by_text("New subdirectory").click()
    page.get_by_label("Name", exact=True).fill("webuser")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("/users/webuser")
    expect(page).to_have_title(re.compile(r"^/users/webuser — /\S+ — NetInfo Manager$"))

    for key, values in (("uid", "777"), ("shell", "/bin/sh\n/bin/zsh\n/bin/bash")):
        page.get_by_text("New property").click()
        page.get_by_label("Property", exact=True).fill(key)
        page.get_by_label("Values, one per line", exact=True).fill(values)
        page.get_by_role("button", name="Add property").click()
        expect(page.locator(".key", has_text=key)).to_be_visible()
    assert server_props("/users/webuser") == [
        ("name", ["webuser"]), ("uid", ["777"]), ("shell", ["/bin/sh", "/bin/zsh", "/bin/bash"])]

    # edit a value in place, then move one up and one to the end
    row = page.locator("tr", has=page.locator(".key", has_text="shell"))
    row.locator("summary").click()
    row.get_by_label("Value 1 of shell").fill("/bin/dash")
    row.get_by_role("button", name="Save", exact=True).first.click()
    expect(page.get_by_role("status").first).to_contain_text("Saved the value")
    row = page.locator("tr", has=page.locator(".key", has_text="shell"))
    row.locator("summary").click()
    row.get_by_role("button", name="Move /bin/bash up").click()
    expect(page.get_by_role("status").first).to_contain_text("Moved the value")
    assert server_props("/users/webuser")[2] == ("shell", ["/bin/dash", "/bin/bash", "/bin/zsh"])
    row = page.locator("tr", has=page.locator(".key", has_text="shell"))
    row.locator("summary").click()
    row.get_by_role("button", name="Move /bin/dash down").click()
    assert server_props("/users/webuser")[2] == ("shell", ["/bin/bash", "/bin/dash", "/bin/zsh"])
    page.goto(page.url + "&ids=1" if "ids=1" not in page.url else page.url)
    expect(page.locator("#instance")).to_be_visible()
    page.locator("tr", has=page.locator(".key", has_text="shell")).locator("summary").click()
    visit(page, shots, "record")
    shot = os.environ.get("NETINFO_WEB_SCREENSHOT")
    if shot:
        page.emulate_media(color_scheme="light")
        page.screenshot(path=shot)


def test_stale_instance_conflict_is_reported(page, shots):
    _login(page)
    page.goto("/browse?d=.&path=/users/webuser")
    row = page.locator("tr", has=page.locator(".key", has_text="uid"))
    row.locator("summary").click()
    row.get_by_label("Value 1 of uid").fill("778")

    async def meddle(c):   # someone else changes the record meanwhile
        d = await c.pathsearch("/users/webuser")
        await c.createprop(d, "comment", ["changed elsewhere"])
    admin(meddle)
    row.get_by_role("button", name="Save", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("changed by someone else")
    expect(page.get_by_role("link", name="Reload")).to_be_visible()
    visit(page, shots, "conflict")
    assert ("uid", ["777"]) in server_props("/users/webuser")     # not overwritten
    page.get_by_role("link", name="Reload").click()
    expect(page.locator(".key", has_text="comment")).to_be_visible()


def test_export_and_reimport_a_subtree(page, shots, tmp_path):
    _login(page)
    page.goto("/transfer?d=.")
    visit(page, shots, "transfer")
    page.get_by_label("Format", exact=True).first.select_option("raw")
    page.get_by_label("Directory (raw format)").fill("/users/webuser")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download").click()
    saved = tmp_path / dl.value.suggested_filename
    dl.value.save_as(saved)
    assert saved.name == "users_webuser.raw"
    exported = raw_from_text(saved.read_text())
    assert dict(exported.props)["name"] == ["webuser"]

    async def damage(c):
        d = await c.pathsearch("/users/webuser")
        await c.createprop(d, "junk", ["x"])
    admin(damage)
    assert ("junk", ["x"]) in server_props("/users/webuser")

    page.locator("#imp-format").select_option("raw")
    page.get_by_label("Directory to replace (raw format)").fill("/users/webuser")
    page.get_by_label("File").set_input_files(str(saved))
    page.get_by_label(re.compile("I understand")).check()
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status").first).to_contain_text("Imported /users/webuser")
    assert server_props("/users/webuser") == exported.props      # the damage is undone


def test_search_tree_and_filter(page, shots):
    page.goto("/find?d=.")
    visit(page, shots, "find", dark=False)
    page.get_by_label("Expression or directory path").fill("^/bin/da")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("1 matching property")
    page.get_by_role("link", name="/users/webuser").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("/users/webuser")

    page.goto("/find?d=.")
    page.get_by_label(re.compile("A directory path")).check()
    page.get_by_label("Expression or directory path").fill("/users/webuser")
    page.get_by_role("button", name="Find").click()
    expect(page.locator(".found li").first).to_contain_text("/users/webuser found in")
    visit(page, shots, "find-results", dark=False)

    # the tree loads a directory's children only when it is opened; arrows work too
    page.goto("/browse?d=.")
    users = page.locator(".tree li", has=page.locator("a", has_text=re.compile("^users$")))
    twisty = users.locator("button.twisty").first
    expect(twisty).to_have_attribute("aria-expanded", "false")
    twisty.click()
    expect(twisty).to_have_attribute("aria-expanded", "true")
    expect(users.locator(".subtree a", has_text="webuser")).to_be_visible()
    users.locator("a", has_text=re.compile("^users$")).first.focus()
    page.keyboard.press("ArrowLeft")
    expect(twisty).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("ArrowRight")
    expect(twisty).to_have_attribute("aria-expanded", "true")

    # the filter box narrows the list as one types
    page.goto("/browse?d=.&path=/users")
    page.get_by_label("Filter by name").fill("webu")
    expect(page.locator("#kids-status")).to_contain_text("1 of")
    expect(page.locator("#kids .tree a")).to_have_count(1)


def test_domain_info_and_phone_layout(browser, web, shots):
    ctx = browser.new_context(base_url=web, viewport={"width": 390, "height": 844},
                              is_mobile=True, has_touch=True)
    page = ctx.new_page()
    try:
        page.goto("/info?d=.")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Domain info")
        expect(page.locator(".state").first).to_have_text("master")
        visit(page, shots, "info-phone")
        page.goto("/browse?d=.&path=/users/bob")
        visit(page, shots, "record-phone")
        # nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        page.goto("/")
        visit(page, shots, "home-phone", dark=False)
    finally:
        ctx.close()


def test_screenshots_were_saved(shots):
    names = {p.name for p in shots.iterdir()}
    assert {"root.png", "record.png", "record-dark.png", "conflict.png"} <= names
    docs = Path(__file__).resolve().parent.parent / "docs" / "web-manager.png"
    assert docs.exists(), "docs/web-manager.png (the README's screenshot) is missing"


def _login(page: Page, user: str = "bob", password: str = "bobpw") -> None:
    page.goto("/login?d=.")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Authenticate").click()
    expect(page.locator(".lock.open")).to_contain_text(user)
