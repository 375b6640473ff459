"""LiteLLM's key admin API: ``/key/generate``, ``/key/info``, ``/key/update``, ``/key/delete``.

Generate, update and delete take the master key. ``/key/info`` also answers a virtual key
about itself (its limits and usage); about any other key it answers 404, as for any id that
is not the caller's.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from api.auth import caller, require_master
from api.key_schemas import KEY_DELETE, KEY_GENERATE, KEY_UPDATE
from api.openai_routes import read_json_object
from batchgate.errors import ModelNotFoundError, NotFoundError, RequestError
from workers.runtime import Runtime
from workers.virtual_keys import KeyStore, VirtualKey

bp = Blueprint("keys", __name__)


def store() -> KeyStore:
    """This app's key store."""
    runtime: Runtime = current_app.extensions["batchgate.runtime"]
    return runtime.key_store


def _check_models(spec: dict[str, Any]) -> None:
    settings = current_app.extensions["batchgate.settings"]
    for name in spec.get("models") or ():
        if settings.resolve_group(name) is None:
            raise ModelNotFoundError(f"The model {name!r} does not exist", param="models")


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"No key {name!r}.", param="key", code="key_not_found")


def _view(vkey: VirtualKey) -> dict[str, Any]:
    return {"key": vkey.token, "info": vkey.info(store().usage(vkey.owner))}


@bp.post("/key/generate")
def generate() -> Response:
    """A new key; the answer is the only place its clear value ever appears."""
    require_master()
    spec = KEY_GENERATE.load(read_json_object())
    _check_models(spec)
    clear, vkey = store().create(spec, time.time())
    return jsonify({"key": clear, **vkey.info(store().usage(vkey.owner))})


@bp.get("/key/info")
def info() -> Response:
    """A key's settings and usage: any key for the master key, else the caller's own."""
    me = caller()
    name = request.args.get("key")
    if name is None:
        if me.key is None:
            raise RequestError("Name the key: /key/info?key=<key or token>", param="key")
        return jsonify(_view(me.key))
    if len(name) > 256:
        raise _not_found(name[:16] + "...")
    vkey = store().find(name)
    if vkey is None or not (me.master or (me.key is not None and me.key.token == vkey.token)):
        raise _not_found(name[:16])
    return jsonify(_view(vkey))


@bp.post("/key/update")
def update() -> Response:
    """Change a key's alias, models, limits, expiry or metadata."""
    require_master()
    spec = KEY_UPDATE.load(read_json_object())
    _check_models(spec)
    vkey = store().find(spec["key"])
    if vkey is None:
        raise _not_found(spec["key"][:16])
    return jsonify(_view(store().update(vkey, spec, time.time())))


@bp.post("/key/delete")
def delete() -> Response:
    """Delete keys (by key, token or alias): all of them, or none when one is unknown."""
    require_master()
    spec = KEY_DELETE.load(read_json_object())
    found: dict[str, VirtualKey] = {}
    for name in spec.get("keys") or ():
        vkey = store().find(name)
        if vkey is None:
            raise _not_found(name[:16])
        found[vkey.token] = vkey
    for alias in spec.get("key_aliases") or ():
        vkey = store().by_alias(alias)
        if vkey is None:
            raise NotFoundError(f"No key with alias {alias!r}.", param="key_aliases",
                                code="key_not_found")
        found[vkey.token] = vkey
    store().delete(list(found.values()))
    return jsonify({"deleted_keys": list(found)})
