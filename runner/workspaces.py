"""A caller's named volumes as workspaces: their files listed, read and written without a run.
Tenancy comes first (another tenant's volume is a 404, like one that does not exist); paths
are checked by the wire models (`engine_models.volume_path`), links and sizes by the backend."""

from __future__ import annotations

import base64
import functools

from runner.backend import Backend
from runner.engine_models import VolumeFile, VolumeFiles, WriteVolumeFile, WrittenVolumeFile
from runner.policy import require_own_volume
from runner.settings import Settings
from runner.tenancy import Tenant
from runner.threads import in_worker


class Workspaces:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend

    async def files(self, name: str, path: str, tenant: Tenant) -> VolumeFiles:
        """Every entry under `path` in one of the tenant's volumes, and what they use."""
        await self._own(name, tenant)
        used, entries = await in_worker(self.backend.volume_files, name, tenant.label, path)
        return VolumeFiles(
            name=name,
            path=path,
            entries=entries,
            total_bytes=used,
            max_bytes=self.settings.max_volume_bytes,
        )

    async def read(self, name: str, path: str, tenant: Tenant) -> VolumeFile:
        """One file: its text when it is UTF-8, else its base64."""
        await self._own(name, tenant)
        read = functools.partial(self.backend.read_volume_file, name, tenant.label, path)
        data = await in_worker(read, self.settings.max_response_bytes)
        try:
            text, encoding = data.decode(), "text"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(data).decode(), "base64"
        return VolumeFile(name=name, path=path, content=text, encoding=encoding, size=len(data))

    async def write(self, name: str, request: WriteVolumeFile, tenant: Tenant) -> WrittenVolumeFile:
        """Write one file into one of the tenant's volumes, within its size bound."""
        await self._own(name, tenant)
        data = request.data()
        write = functools.partial(self.backend.write_volume_file, name, tenant.label)
        used = await in_worker(write, request.path, data, int(request.mode, 8))
        return WrittenVolumeFile(name=name, path=request.path, size=len(data), total_bytes=used)

    async def _own(self, name: str, tenant: Tenant) -> None:
        await in_worker(require_own_volume, name, tenant, self.backend.volume_state)
