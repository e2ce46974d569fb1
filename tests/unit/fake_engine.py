"""A Docker engine stand-in: the slice of the Docker SDK that ``matchlab.images.build_images`` uses."""

from __future__ import annotations

import tarfile

from matchlab.images.targets import OFFICIAL_BASE


class FakeImage:
    def __init__(self, image_id: str, labels: dict[str, str] | None = None) -> None:
        self.id, self.labels, self.attrs, self.tags = image_id, dict(labels or {}), {"Size": 123_000_000}, []

    def tag(self, repository: str, tag: str) -> None:
        self.tags.append(f"{repository}:{tag}")


class FakeImages:
    """The slice of the Docker SDK's ``client.images`` that build_images uses, recording the builds."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def get(self, name: str) -> FakeImage:
        import docker.errors

        if name not in self.engine.images:
            raise docker.errors.ImageNotFound(name)
        return self.engine.images[name]

    def pull(self, name: str) -> FakeImage:
        import docker.errors

        raise docker.errors.APIError(f"pull {name}: no registry", explanation="lookup registry-1.docker.io: no such host")

    def build(self, *, fileobj, custom_context, target, tag, buildargs, labels, **_):
        with tarfile.open(fileobj=fileobj) as tar:
            names = tar.getnames()
        self.engine.builds.append((target, tag, buildargs["BASE"], names))
        image = self.engine.images[tag] = FakeImage(f"sha256:{len(self.engine.builds)}", labels)
        return image, []


class FakeEngine:
    """What the engine holds (tag -> image) and the builds it was asked for."""

    def __init__(self, images: dict[str, FakeImage] | None = None) -> None:
        self.images = dict(images or {})
        self.builds: list[tuple[str, str, str, list[str]]] = []
        self.images_api = FakeImages(self)


def engine_with_base(labels: dict[str, str] | None = None) -> FakeEngine:
    return FakeEngine({OFFICIAL_BASE: FakeImage("sha256:base", labels)})


class Client:
    """A docker client stand-in: ``images`` is the fake collection."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.images = engine.images_api
