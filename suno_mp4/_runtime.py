"""A running client's machinery: one session and transport, and the background work — the
poller, the callback listener, the relay, the lease keeper, the ledger's saves — in one
task of its own, built once, started in order and stopped together."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

import aiohttp
import anyio
from anyio.abc import TaskGroup

from ._callbacks import CallbackListener, CallbackRelay
from ._errors import AsyncioRequiredError, ClientClosedError
from ._jobs import JobRegistry
from ._ledger import Ledger
from ._limiter import RequestLimiter
from ._options import Settings
from ._poller import Poller
from ._store import JobStore, LeasedJobStore
from ._transport import Transport, api_headers, dumps
from ._untrusted import loads

__all__ = ["Runtime"]

#: ``asyncio._get_running_loop`` (``None`` outside a loop), bound once: it is asked on every
#: request.
_running_loop = asyncio._get_running_loop

logger = logging.getLogger("suno_mp4.client")

#: The store's name for the learned render times (``PollPolicy(schedule="learned")``).
_ESTIMATE = "render-times"
#: What is read of it (500 render times are about 10 KB): a store is another process's word.
_MAX_SAVED_ESTIMATE = 1_000_000


class Runtime:
    """Runs in a task the client owns, not in the caller's: :meth:`stop` may then come from
    any task, and a failure in the background fails the pending jobs instead of cancelling
    the code inside ``async with``."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: JobRegistry,
        poller: Poller,
        ledger: Ledger,
        limiter: RequestLimiter,
        store: JobStore,
        listener: CallbackListener | None,
        relay: CallbackRelay | None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._poller = poller
        self._ledger = ledger
        self._limiter = limiter
        self._store = store
        self._listener = listener
        self._relay = relay
        self._stop = anyio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: Transport | None = None
        self._tg: TaskGroup | None = None
        #: Why the background work ended early, if it did.
        self.failed: BaseException | None = None

    @property
    def transport(self) -> Transport:
        transport = self._transport
        if transport is not None and self._loop is _running_loop():
            return transport
        if transport is not None:
            raise ClientClosedError(
                "this Client runs on another event loop (thread): make one per loop"
            )
        if self.failed is not None:
            name = type(self.failed).__name__
            raise ClientClosedError(f"this Client stopped after an internal error ({name})")
        raise ClientClosedError("this Client is not running (use it inside `async with`)")

    @property
    def task_group(self) -> TaskGroup:
        self.transport  # noqa: B018 - raises ClientClosedError when not running
        assert self._tg is not None
        return self._tg

    async def start(self) -> None:
        """Start everything; returns once the client can be used (or raises why not)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise AsyncioRequiredError(
                "suno-mp4 runs on asyncio (aiohttp): use asyncio.run(...) or anyio.run(...) "
                "with its default asyncio backend, not trio"
            ) from None
        self._loop = loop
        ready: asyncio.Future[None] = loop.create_future()
        name = f"suno_mp4.Client {self._settings.base_url}"
        self._task = loop.create_task(self._run(ready), name=name)
        try:
            await ready
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop everything and wait until it has stopped (from any task, more than once)."""
        self._stop.set()
        if self._task is not None:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([self._task])

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with AsyncExitStack() as stack:
                await self._serve(stack, ready)
        except BaseException as exc:
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(_single(exc))
                return
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.error("the client's background work failed", exc_info=exc)
            self.failed = exc
            self._registry.close(
                ClientClosedError(
                    f"the Client stopped after an internal error ({type(exc).__name__}); the "
                    "task keeps running on the server: re-attach with client.job(task_id)"
                )
            )
        finally:
            self._transport = None

    async def _serve(self, stack: AsyncExitStack, ready: asyncio.Future[None]) -> None:
        s = self._settings
        if urlsplit(s.base_url).scheme.lower() == "http" and not _is_loopback(s.base_url):
            logger.warning(
                "base_url %s is plain http to another machine: the API key crosses the "
                "network unencrypted; use https",
                s.base_url,
            )
        connector = aiohttp.TCPConnector(limit=s.max_connections)
        # Two sessions on one connector: video downloads must not carry the API key, and
        # the API's requests carry their headers as the session's defaults.
        files = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, raise_for_status=False)
        )
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=connector,
                connector_owner=False,
                headers=api_headers(s.api_key),
                json_serialize=dumps,
                raise_for_status=False,
            )
        )
        transport = Transport(
            session,
            files=files,
            base_url=s.base_url,
            api_key=s.api_key,
            retry=s.retry,
            limiter=self._limiter,
            timeout=s.timeout,
            codes=s.codes,
            rng=s.rng,
            max_response_bytes=s.max_response_bytes,
        )
        stack.callback(transport.abort_streams)  # before the sessions close
        if self._listener is not None:
            await self._start_listener(stack, self._listener)
        if self._limiter.shared is not None:
            stack.push_async_callback(self._flush_limiter)  # after every request ended
        await self._restore_estimate()
        stack.push_async_callback(self._keep_estimate)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                if self._limiter.shared is not None:
                    await tg.start(self._limiter.run)
                if self._relay is not None:
                    # Subscribed before any job registers (the listener relays meanwhile).
                    await tg.start(self._relay.run, self._registry)
                await tg.start(self._poller.run, self._registry)
                await tg.start(self._ledger.run)
                if isinstance(self._store, LeasedJobStore):
                    await tg.start(self._ledger.keep_lease, self._store)
                self._transport = transport
                if not ready.done():
                    ready.set_result(None)
                await self._stop.wait()
            finally:
                self._transport = None
                tg.cancel_scope.cancel()  # the poller, batches, the ledger's last saves
        self._tg = None

    async def _start_listener(self, stack: AsyncExitStack, listener: CallbackListener) -> None:
        listener.bind(self._registry, self._relay)
        stack.callback(listener.unbind)
        if not listener.attached:
            await listener.start()
            stack.push_async_callback(listener.stop)
        if listener.public_url is None and not _is_loopback(self._settings.base_url):
            logger.warning(
                "the callback listener has no public_url: a remote API cannot reach %s, so "
                "jobs will resolve only by the safety poll every %.0f s; pass "
                "CallbackListener(public_url=...)",
                listener.callback_url.rsplit("/", 1)[0],
                self._settings.fallback_interval,
            )

    async def _restore_estimate(self) -> None:
        """A store that keeps the learned render times starts the poller warm."""
        load = getattr(self._store, "load_meta", None)
        if self._poller.estimate is None or load is None:
            return
        try:
            saved = await load(_ESTIMATE)
            if saved and len(saved) > _MAX_SAVED_ESTIMATE:  # another process wrote it
                raise ValueError(f"{len(saved)} characters, more than {_MAX_SAVED_ESTIMATE}")
            self._poller.estimate.seed(loads(saved, finite=True) if saved else [])
        except Exception as exc:  # a bad saved value costs a cold start, nothing more
            logger.warning("could not restore the learned render times: %s", exc)

    async def _keep_estimate(self) -> None:
        save = getattr(self._store, "save_meta", None)
        if self._poller.estimate is None or save is None or self._ledger.store_failed:
            return  # (a store that refused a write would make closing wait for it again)
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                await save(_ESTIMATE, json.dumps(self._poller.estimate.recent()))
            except Exception as exc:
                logger.warning("could not save the learned render times: %s", exc)

    async def _flush_limiter(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await self._limiter.flush()


def _single(exc: BaseException) -> BaseException:
    """The one error inside task-group wrappers (a start-up failure reads as itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
