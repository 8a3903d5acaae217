"""The common HTTP surface of every service: the app factory, errors, health, readiness, metrics,
request guard, serving."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import load_tokens
from shared.kafka import broker_answers
from shared.loop_lag import watch_loop_lag
from shared.metrics import DEPENDENCY_UP, HTTP_REQUEST_SECONDS
from shared.settings import ServiceSettings
from shared.supervise import within

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from shared.supervise import Supervisor

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


class FieldError(BaseModel):
    """One refused input: where (`loc`), why (`msg`), and what kind (`type`); some add `position`."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str = "value_error"


class ErrorBody(BaseModel):
    """The body of every error answer (4xx and 5xx) of every service."""

    detail: str | list[FieldError] = Field(
        description="the message; for a refused input (422) usually the list of refused fields",
        examples=["missing or unknown bearer token"],
    )
    status: int = Field(description="the HTTP status code, repeated", examples=[401])
    message: str = Field(
        description="one line a caller can show: `detail` itself, or its fields' messages joined",
        examples=["missing or unknown bearer token"],
    )


def error_body(status_code: int, detail: Any) -> dict[str, Any]:
    """The `ErrorBody` of an answer with `detail` (a message, or a list of field errors)."""
    if isinstance(detail, str):
        message = detail
    elif isinstance(detail, list) and detail:
        message = "; ".join(str(i.get("msg", i)) if isinstance(i, dict) else str(i) for i in detail)
    else:
        message = str(detail)
    return {"detail": detail, "status": status_code, "message": message}


def error_response(status_code: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status_code, detail), status_code, headers=headers)


async def app_runtime(request: Request) -> Any:
    """The app's runtime (`app.state.runtime`): each service's `api/deps.py` types it,
    `Runtime = Annotated[<Name>Runtime, Depends(app_runtime)]`. Async, as every dependency that
    does no I/O: FastAPI runs a plain `def` one in a worker thread."""
    return request.app.state.runtime


def unprocessable(loc: Sequence[str | int], message: str, **extra: Any) -> HTTPException:
    """The 422 of an input that passed the schema but not the service (a purpose not in the
    catalog, a rule that does not parse, a tree size beyond the ledger): one `FieldError`, shaped
    like FastAPI's own. `loc` is where ("body", "path" or "query", then the field); `extra` adds
    fields such as a rule's `position`."""
    return HTTPException(422, [{"loc": list(loc), "msg": message, "type": "value_error", **extra}])


def _described(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# The error answers every `/v1` operation declares (`include_router(..., responses=API_ERRORS)`).
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _described("the body is not JSON (FastAPI answers before any field is validated)"),
    401: _described("no or an unknown bearer token (`WWW-Authenticate: Bearer`)"),
    403: _described("the token lacks the operation's scope"),
    404: _described("no such resource"),
    413: _described("the body is larger than MAX_BODY_BYTES"),
    422: _described("a refused input: path, query or body"),
    503: _described("a store or the broker is not reachable yet; retry later"),
}


def install_error_handlers(app: FastAPI) -> None:
    """Every HTTPException and validation failure answered with an `ErrorBody`."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    headers = exc.headers
    if exc.status_code == 405:  # Starlette names only the first route's methods; list every route's
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return error_response(exc.status_code, exc.detail, headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


# A refused value is never echoed (FastAPI's `input`): it may be a customer id or an address,
# and error bodies reach clients' logs. `loc`, `msg` and `type` say what to fix.
_NOT_ECHOED = frozenset({"input", "url"})


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in error.items() if k not in _NOT_ECHOED} for error in exc.errors()]
    return error_response(422, jsonable_encoder(errors))


class ConfigurationError(RuntimeError):
    """A setting is wrong; the message names it and is printed as one line at start-up."""


class Readiness:
    """Named checks; each returns None when its dependency is ready, else the reason."""

    def __init__(self, timeout: float = 2.5) -> None:
        self._checks: dict[str, ReadinessCheck] = {}
        self.timeout = timeout

    def add(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    async def reasons(self) -> dict[str, str]:
        results = await asyncio.gather(*(self._run(name, c) for name, c in self._checks.items()))
        return {name: reason for name, reason in results if reason is not None}

    async def _run(self, name: str, check: ReadinessCheck) -> tuple[str, str | None]:
        try:
            reason = await within(self.timeout, check())
        except TimeoutError:
            reason = f"{name}: no answer within {self.timeout}s"
        except Exception as exc:  # a failing check is a reason to report, not a 500
            # The type only: messages name internal hosts and ports (and sometimes data).
            reason = f"{name}: {type(exc).__name__}"
        DEPENDENCY_UP.labels(name).set(0 if reason else 1)
        return name, reason


def kafka_ready(producer: Callable[[], AIOKafkaProducer | None]) -> ReadinessCheck:
    """The `kafka` check of every service: "connecting" until the runtime has started its producer
    (`producer()` is read at each check), then whether the broker answers a metadata request."""

    async def kafka() -> str | None:
        current = producer()
        if current is None:
            return "kafka: connecting to the broker"
        return await broker_answers(current)

    return kafka


def database_ready(ping: Callable[[], object]) -> ReadinessCheck:
    """The `database` check of every service with a SQL store: `ping` (a trivial query, blocking)
    run in a thread; the error it raises is the reason, reported by its type (`Readiness`)."""

    async def database() -> str | None:
        await asyncio.to_thread(ping)
        return None

    return database


class Health(BaseModel):
    status: str


class ReadyReport(BaseModel):
    status: str
    reasons: dict[str, str] = {}


def install_operational_routes(app: FastAPI, readiness: Readiness) -> None:
    """`/healthz`, `/readyz`, `/metrics` and per-route latency on `app`."""

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """The process is alive and serving HTTP."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=ReadyReport,
        tags=["operations"],
        responses={503: {"model": ReadyReport, "description": "a dependency is not ready"}},
    )
    async def readyz() -> Any:
        """200 when the broker, stores and compacted inputs are connected and loaded, else 503."""
        reasons = await readiness.reasons()
        if reasons:
            return JSONResponse(ReadyReport(status="unavailable", reasons=reasons).model_dump(), 503)
        return ReadyReport(status="ready")

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics in the text exposition format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestTimer)


class ServiceRuntime(Protocol):
    """What the app factory needs of a service's composition root (`<Name>Runtime` in bootstrap.py)."""

    supervisor: Supervisor

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        """The named checks of the runtime's dependencies; the factory adds `tasks`."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_service_app(
    name: str,
    settings: ServiceSettings,
    runtime: ServiceRuntime,
    routers: Sequence[APIRouter],
    *,
    public_routers: Sequence[APIRouter] = (),
    exception_handlers: Mapping[type[Exception], ExceptionHandler] | None = None,
    start_in_background: bool = False,
) -> FastAPI:
    """The FastAPI app of service `name`, the same skeleton in all four.

    The lifespan starts `runtime` and stops it on shutdown; `start_in_background` runs the start
    as the supervised `startup` task instead (a start-up that waits on the broker and Redis and
    cannot start over: it stays on /readyz until it is through). `/readyz` runs the runtime's
    checks and `tasks`; `app.state` holds `tokens` and `runtime`, nothing else (routes reach what
    they need through the runtime, `api/deps.py`). `routers` are the
    `/v1` API (bearer tokens, every `ErrorBody` answer declared); `public_routers` are reached
    without a bearer token.
    """
    readiness = Readiness()
    for check_name, check in runtime.readiness_checks().items():
        readiness.add(check_name, check)
    readiness.add("tasks", runtime.supervisor.check)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.supervisor.spawn("loop-lag", watch_loop_lag)
        if start_in_background:
            runtime.supervisor.spawn("startup", runtime.start, restart=False)
        else:
            await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=f"segwarden {name}", version="0.1.0", lifespan=lifespan)
    app.state.tokens = load_tokens(settings)
    app.state.runtime = runtime
    install_request_guard(app, settings.max_body_bytes)
    install_operational_routes(app, readiness)
    install_error_handlers(app)
    for error, handler in (exception_handlers or {}).items():
        app.add_exception_handler(error, handler)
    for router in routers:
        app.include_router(router, responses=API_ERRORS)
    for router in public_routers:
        app.include_router(router)
    _document_refusals_as_error_body(app)
    return app


def _document_refusals_as_error_body(app: FastAPI) -> None:
    """Every 422 in the OpenAPI document is an `ErrorBody`, as every 422 answer is (the error
    handlers): FastAPI documents its own `HTTPValidationError` for a route that declares no 422,
    such as those outside `/v1`, which never answer with it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            components = schema.get("components", {}).get("schemas", {})
            # ErrorBody is there whenever a router declares API_ERRORS (every service's /v1).
            if "ErrorBody" in components:
                for operations in schema.get("paths", {}).values():
                    for operation in operations.values():
                        refused = operation.get("responses", {}).get("422", {})
                        content = refused.get("content", {}).get("application/json", {})
                        if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                            content["schema"] = {"$ref": "#/components/schemas/ErrorBody"}
                for unused in ("HTTPValidationError", "ValidationError"):
                    components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the document


class RequestTimer:
    """Per-route request latency, as a plain ASGI middleware.

    Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) costs a task group and a
    re-streamed body per request: a fifth of a service's CPU under load (measured on consent).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            # The router puts the matched route into the (shared) scope: label by its template.
            template = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUEST_SECONDS.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


class BodyTooLargeError(HTTPException):
    """A streamed body passed MAX_BODY_BYTES; raised from `receive`, answered with 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit), headers={"Connection": "close"})


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes (MAX_BODY_BYTES)"


class RequestGuard:
    """Refuses what no route should read, before any route reads it.

    A body over `max_body_bytes` gets 413: at once when Content-Length says so, else when the
    streamed (chunked) body passes the limit. A `/v1` call without a known bearer token gets
    401 before its body is read or parsed; scopes (403) stay with each route's dependency.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await _refuse(send, 413, _too_large(self.limit), {"connection": "close"})
            return
        if _is_api(scope["path"]) and not _authenticated(scope, headers.get("authorization", "")):
            await _refuse(send, 401, "missing or unknown bearer token", {"www-authenticate": "Bearer"})
            return
        started = False

        async def note_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _capped(receive, self.limit), note_start)
        except BodyTooLargeError:  # a consumer of the body outside FastAPI's request handling
            if started:
                raise
            await _refuse(send, 413, _too_large(self.limit), {"connection": "close"})


def _is_api(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def _authenticated(scope: Scope, authorization: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return scope["app"].state.tokens.lookup(token.strip()) is not None


def _capped(receive: Receive, limit: int) -> Receive:
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLargeError(limit)
        return message

    return receive_within_limit


async def _refuse(send: Send, status_code: int, detail: str, headers: dict[str, str]) -> None:
    response = error_response(status_code, detail, headers)
    await send({"type": "http.response.start", "status": status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def install_request_guard(app: FastAPI, max_body_bytes: int) -> None:
    """The body limit and authentication-before-parsing on `app` (call before the operational routes,
    so request latency, the outer middleware, also counts what the guard refused)."""
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)


def check_port_free(host: str, port: int, setting: str) -> None:
    """Fail fast with the setting's name rather than uvicorn's traceback when a port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"{setting}={port}: cannot listen on {host}:{port} ({exc.strerror})"
            ) from exc


def serve(app: FastAPI, host: str, port: int, port_setting: str, log_level: str = "info") -> None:
    """Run `app` under uvicorn in the foreground until SIGINT or SIGTERM."""
    check_port_free(host, port, port_setting)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    uvicorn.Server(config).run()
