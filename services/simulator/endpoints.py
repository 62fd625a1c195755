"""The HTTP face of the simulator: the VK and OK endpoints and a control API.

POST|GET /method/<name>                      VK API (``execute`` included)
POST|GET /fb.do                              OK API (``method=...``, signed)
GET      /healthz, /readyz, /metrics          the shared HTTP edge (services/runtime/http.py)

Identity providers (providers.py; see docs/simulator.md):
GET  /vkid/authorize           VK ID consent (sim_user_id picks the user) -> 302 redirect_uri
POST /vkid/oauth2/auth         VK ID token endpoint (code + PKCE verifier + device_id)
POST /vkid/oauth2/user_info    VK ID user info (client_id, access_token)
GET  /ok/oauth/authorize       OK consent (sim_user_id) -> 302 redirect_uri?code=..
POST /oauth/token.do           OK code grant; users.getCurrentUser is on /fb.do
GET  /apple/auth/keys          Sign in with Apple JWKS

Control API (JSON; for tests and the demo, never exposed by a real network):
POST   /_control/groups                                  {network, group_id, members?}
GET    /_control/groups/{net}/{gid}                      summary
POST   /_control/groups/{net}/{gid}/members              {add?: [ids], remove?: [ids]}
POST   /_control/groups/{net}/{gid}/posts                {date?, pinned?} -> {post_id}
DELETE /_control/groups/{net}/{gid}/posts/{pid}
POST   /_control/groups/{net}/{gid}/posts/{pid}/likes    {user_id}
DELETE /_control/groups/{net}/{gid}/posts/{pid}/likes/{uid}
POST   /_control/groups/{net}/{gid}/posts/{pid}/reposts  {user_id}           (VK only)
DELETE /_control/groups/{net}/{gid}/posts/{pid}/reposts/{uid}
POST   /_control/groups/{net}/{gid}/posts/{pid}/comments {author_id, reply_to?} -> {comment_id}
DELETE /_control/groups/{net}/{gid}/posts/{pid}/comments/{cid}
POST   /_control/faults        {network, method, code?, count?, after?, http_status?, message?,
                                truncate?}
GET    /_control/faults;  DELETE /_control/faults
GET    /_control/counters; DELETE /_control/counters
POST   /_control/apple/id-token  {sub, aud, nonce, expires_in?, forge?} -> {id_token}
POST   /_control/apple/keys      rotate: a new current signing key -> {kid}
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, cast

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from yarl import URL

from services.runtime.http import create_app as create_edge
from services.simulator.enforcement import Fault, Reply, Simulator
from services.simulator.providers import OAuthError, OkOAuthProvider
from services.simulator.world import NetworkName, WorldError

SIMULATOR = web.AppKey("simulator", Simulator)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def _api(path: str) -> str:
    """The label a request is counted under: a handful of values, never the raw path."""
    if path.startswith("/method/"):
        return "vk"
    if path == "/fb.do":
        return "ok"
    if path.startswith("/_control/"):
        return "control"
    if path.startswith(("/vkid/", "/ok/oauth/", "/oauth/", "/apple/")):
        return "identity"
    return "probe" if path in _PROBES else "other"


class WorldCollector(Collector):
    """What the simulated world holds, read at scrape time."""

    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator

    def collect(self) -> Iterator[Metric]:
        groups = GaugeMetricFamily(
            "social_loyalty_simulator_groups", "Groups in the simulated world.", labels=["network"]
        )
        posts = GaugeMetricFamily(
            "social_loyalty_simulator_posts",
            "Posts (deleted ones included) in the simulated world.",
            labels=["network"],
        )
        per_network: dict[str, list[int]] = {"vk": [0, 0], "ok": [0, 0]}
        for (net, _), group in list(self._simulator.world.groups.items()):
            counts = per_network.setdefault(net, [0, 0])
            counts[0] += 1
            counts[1] += len(group.posts)
        for name, (n_groups, n_posts) in sorted(per_network.items()):
            groups.add_metric([name], n_groups)
            posts.add_metric([name], n_posts)
        faults = GaugeMetricFamily(
            "social_loyalty_simulator_faults_pending", "Injected faults still to fire."
        )
        faults.add_metric([], len(self._simulator.faults.pending()))
        yield from (groups, posts, faults)

    def describe(self) -> Iterator[Metric]:
        return iter(())


async def _params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.method == "POST":
        form = await request.post()
        params.update({key: str(value) for key, value in form.items()})
    return params


def _respond(reply: Reply) -> web.Response:
    if reply.text is not None:
        return web.Response(status=reply.status, text=reply.text, headers=dict(reply.headers))
    return web.json_response(reply.body, status=reply.status, headers=dict(reply.headers))


async def vk_method(request: web.Request) -> web.Response:
    params = await _params(request)
    return _respond(request.app[SIMULATOR].vk(request.match_info["name"], params))


async def ok_method(request: web.Request) -> web.Response:
    return _respond(request.app[SIMULATOR].ok(await _params(request)))


# -- identity providers -------------------------------------------------------------


def _redirect(redirect_uri: str, params: dict[str, str]) -> NoReturn:
    target = URL(redirect_uri)
    raise web.HTTPFound(str(target.update_query(params)))


def _oauth_error(exc: OAuthError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


async def vk_id_authorize(request: web.Request) -> web.Response:
    params = dict(request.query)
    try:
        answer = request.app[SIMULATOR].providers.vk_id.authorize(params)
    except OAuthError as exc:
        return _oauth_error(exc)
    return _redirect(params["redirect_uri"], answer)


async def vk_id_token(request: web.Request) -> web.Response:
    try:
        return web.json_response(
            request.app[SIMULATOR].providers.vk_id.token(await _params(request))
        )
    except OAuthError as exc:
        return _oauth_error(exc)


async def vk_id_user_info(request: web.Request) -> web.Response:
    provider = request.app[SIMULATOR].providers.vk_id
    try:
        return web.json_response(provider.user_info(await _params(request)))
    except OAuthError as exc:
        return _oauth_error(exc)


def _ok_provider(request: web.Request) -> OkOAuthProvider:
    provider = request.app[SIMULATOR].providers.ok
    if provider is None:
        raise web.HTTPNotFound(text="this simulator has no OK application")
    return provider


async def ok_authorize(request: web.Request) -> web.Response:
    params = dict(request.query)
    try:
        answer = _ok_provider(request).authorize(params)
    except OAuthError as exc:
        return _oauth_error(exc)
    return _redirect(params["redirect_uri"], answer)


async def ok_token(request: web.Request) -> web.Response:
    try:
        return web.json_response(_ok_provider(request).token(await _params(request)))
    except OAuthError as exc:
        return _oauth_error(exc)


async def apple_keys(request: web.Request) -> web.Response:
    simulator = request.app[SIMULATOR]
    simulator.requests["apple:keys"] += 1  # GET /_control/counters shows JWKS fetches
    return web.json_response(simulator.providers.apple.jwks())


async def apple_id_token(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        token = request.app[SIMULATOR].providers.apple.mint(
            str(body["sub"]),
            str(body["aud"]),
            str(body["nonce"]),
            expires_in=int(body.get("expires_in", 600)),
            forge=bool(body.get("forge", False)),
        )
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"missing {exc.args[0]}") from None
    return web.json_response({"id_token": token})


async def apple_rotate(request: web.Request) -> web.Response:
    return web.json_response({"kid": request.app[SIMULATOR].providers.apple.rotate()})


# -- control API --------------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _network(request: web.Request) -> NetworkName:
    network = request.match_info["net"]
    if network not in {"vk", "ok"}:
        raise web.HTTPNotFound(text=f"unknown network {network}")
    return cast(NetworkName, network)


def _ids(request: web.Request, *names: str) -> list[int]:
    try:
        return [int(request.match_info[name]) for name in names]
    except ValueError:
        raise web.HTTPBadRequest(text="ids are integers") from None


@web.middleware
async def world_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A missing group, post or comment is a 404 with the reason, not a 500."""
    try:
        return await handler(request)
    except WorldError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": f"bad request: {exc!r}"}, status=400)


async def add_group(request: web.Request) -> web.Response:
    body = await _body(request)
    network = cast(NetworkName, body["network"])
    if network not in {"vk", "ok"}:
        raise web.HTTPBadRequest(text="network is vk or ok")
    group = request.app[SIMULATOR].world.add_group(
        network, int(body["group_id"]), (int(m) for m in body.get("members", []))
    )
    return web.json_response({"network": network, "group_id": group.id}, status=201)


async def group_summary(request: web.Request) -> web.Response:
    (group_id,) = _ids(request, "gid")
    group = request.app[SIMULATOR].world.group(_network(request), group_id)
    return web.json_response(
        {
            "members": len(group.members),
            "posts": [
                {
                    "id": post.id,
                    "date": post.date,
                    "pinned": post.pinned,
                    "likes": len(post.likers),
                    "reposts": len(post.reposters),
                    "comments": len(post.live_comments()),
                }
                for post in group.live_posts()
            ],
        }
    )


async def change_members(request: web.Request) -> web.Response:
    body = await _body(request)
    (group_id,) = _ids(request, "gid")
    world = request.app[SIMULATOR].world
    network = _network(request)
    world.add_members(network, group_id, (int(u) for u in body.get("add", [])))
    world.remove_members(network, group_id, (int(u) for u in body.get("remove", [])))
    return web.json_response({"members": len(world.group(network, group_id).members)})


async def add_post(request: web.Request) -> web.Response:
    body = await _body(request)
    (group_id,) = _ids(request, "gid")
    post_id = request.app[SIMULATOR].world.add_post(
        _network(request),
        group_id,
        date=None if body.get("date") is None else int(body["date"]),
        pinned=bool(body.get("pinned", False)),
    )
    return web.json_response({"post_id": post_id}, status=201)


async def delete_post(request: web.Request) -> web.Response:
    group_id, post_id = _ids(request, "gid", "pid")
    request.app[SIMULATOR].world.delete_post(_network(request), group_id, post_id)
    return web.json_response({"deleted": post_id})


async def like(request: web.Request) -> web.Response:
    body = await _body(request)
    group_id, post_id = _ids(request, "gid", "pid")
    request.app[SIMULATOR].world.like(_network(request), group_id, post_id, int(body["user_id"]))
    return web.json_response({"liked": int(body["user_id"])}, status=201)


async def unlike(request: web.Request) -> web.Response:
    group_id, post_id, user_id = _ids(request, "gid", "pid", "uid")
    request.app[SIMULATOR].world.unlike(_network(request), group_id, post_id, user_id)
    return web.json_response({"unliked": user_id})


async def repost(request: web.Request) -> web.Response:
    body = await _body(request)
    group_id, post_id = _ids(request, "gid", "pid")
    request.app[SIMULATOR].world.repost(_network(request), group_id, post_id, int(body["user_id"]))
    return web.json_response({"reposted": int(body["user_id"])}, status=201)


async def delete_repost(request: web.Request) -> web.Response:
    group_id, post_id, user_id = _ids(request, "gid", "pid", "uid")
    request.app[SIMULATOR].world.delete_repost(_network(request), group_id, post_id, user_id)
    return web.json_response({"deleted": user_id})


async def comment(request: web.Request) -> web.Response:
    body = await _body(request)
    group_id, post_id = _ids(request, "gid", "pid")
    reply_to = body.get("reply_to")
    comment_id = request.app[SIMULATOR].world.comment(
        _network(request),
        group_id,
        post_id,
        int(body["author_id"]),
        reply_to=None if reply_to is None else int(reply_to),
    )
    return web.json_response({"comment_id": comment_id}, status=201)


async def delete_comment(request: web.Request) -> web.Response:
    group_id, post_id, comment_id = _ids(request, "gid", "pid", "cid")
    request.app[SIMULATOR].world.delete_comment(_network(request), group_id, post_id, comment_id)
    return web.json_response({"deleted": comment_id})


async def add_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    network = body["network"]
    if network not in {"vk", "ok"}:
        raise web.HTTPBadRequest(text="network is vk or ok")
    fault = Fault(
        network=network,
        method=str(body["method"]),
        code=int(body.get("code", 0)),
        remaining=int(body.get("count", 1)),
        http_status=None if body.get("http_status") is None else int(body["http_status"]),
        message=str(body.get("message", "")),
        after=int(body.get("after", 0)),
        truncate=None if body.get("truncate") is None else int(body["truncate"]),
    )
    if fault.http_status is None and fault.code == 0 and fault.truncate is None:
        raise web.HTTPBadRequest(text="a fault needs code, http_status or truncate")
    request.app[SIMULATOR].faults.add(fault)
    return web.json_response({"armed": True}, status=201)


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response(
        [
            {
                "network": f.network,
                "method": f.method,
                "code": f.code,
                "count": f.remaining,
                "after": f.after,
                "http_status": f.http_status,
                "truncate": f.truncate,
            }
            for f in request.app[SIMULATOR].faults.pending()
        ]
    )


async def clear_faults(request: web.Request) -> web.Response:
    request.app[SIMULATOR].faults.clear()
    return web.json_response({"cleared": True})


async def counters(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIMULATOR].counters())


async def reset_counters(request: web.Request) -> web.Response:
    request.app[SIMULATOR].reset_counters()
    return web.json_response({"reset": True})


def create_app(simulator: Simulator, registry: CollectorRegistry | None = None) -> web.Application:
    """The aiohttp application serving ``simulator``, on the shared health and metrics edge.

    ``/readyz`` is 200 while the server is serving (started, not shutting down);
    ``/metrics`` counts the requests served by API and status and shows what the
    world holds. Each app gets its own registry unless given one, so tests can
    run several simulators in one process.
    """
    registry = registry if registry is not None else CollectorRegistry()
    requests = Counter(
        "social_loyalty_simulator_requests",
        "HTTP requests answered, by API (vk, ok, control, probe, other) and status.",
        ["api", "status"],
        registry=registry,
    )
    registry.register(WorldCollector(simulator))
    serving = {"state": "starting"}

    def not_ready() -> str | None:
        return None if serving["state"] == "serving" else serving["state"]

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        api = _api(request.path)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            requests.labels(api, str(exc.status)).inc()
            raise
        except BaseException:
            requests.labels(api, "500").inc()
            raise
        requests.labels(api, str(response.status)).inc()
        return response

    async def started(_: web.Application) -> None:
        serving["state"] = "serving"

    async def stopping(_: web.Application) -> None:
        serving["state"] = "shutting down"

    app = create_edge("simulator", not_ready, registry)
    app.middlewares.extend([count, world_errors])
    app.on_startup.append(started)
    app.on_shutdown.append(stopping)
    app[SIMULATOR] = simulator
    group = "/_control/groups/{net}/{gid}"
    post = group + "/posts/{pid}"
    app.add_routes(
        [
            web.get("/method/{name}", vk_method),
            web.post("/method/{name}", vk_method),
            web.get("/fb.do", ok_method),
            web.post("/fb.do", ok_method),
            web.get("/vkid/authorize", vk_id_authorize),
            web.post("/vkid/oauth2/auth", vk_id_token),
            web.post("/vkid/oauth2/user_info", vk_id_user_info),
            web.get("/ok/oauth/authorize", ok_authorize),
            web.post("/oauth/token.do", ok_token),
            web.get("/apple/auth/keys", apple_keys),
            web.post("/_control/apple/id-token", apple_id_token),
            web.post("/_control/apple/keys", apple_rotate),
            web.post("/_control/groups", add_group),
            web.get(group, group_summary),
            web.post(group + "/members", change_members),
            web.post(group + "/posts", add_post),
            web.delete(post, delete_post),
            web.post(post + "/likes", like),
            web.delete(post + "/likes/{uid}", unlike),
            web.post(post + "/reposts", repost),
            web.delete(post + "/reposts/{uid}", delete_repost),
            web.post(post + "/comments", comment),
            web.delete(post + "/comments/{cid}", delete_comment),
            web.post("/_control/faults", add_fault),
            web.get("/_control/faults", list_faults),
            web.delete("/_control/faults", clear_faults),
            web.get("/_control/counters", counters),
            web.delete("/_control/counters", reset_counters),
        ]
    )
    return app
