"""Private images: one that came onto the engine through the runner with credentials is for the
tenants that proved access to it, not for every caller of the engine's cache.

What Kubernetes' AlwaysPullImages admission exists for. The backend keeps, on the engine, a
*grant* per (image id, tenant) that proved access: a pull with credentials that brought the image
(or found it private already), or credentials the registry accepted for it without a pull. An
image with no grant is public: pulled anonymously, already on the engine as a public image
before a credentialed pull brought the same id, or put there outside the runner. A successful
anonymous pull makes an image public again (its registry serves it to anyone).

A tenant without a grant meets another's private image as if it were not on the engine: with
`pull_policy: never` it is "not on the engine", with `missing` the runner pulls it anonymously
(the registry says no, as it would have), and listings leave it out.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.engine_models import ImageInfo

Grants = Mapping[str, frozenset[str]]
"""Image id → the labels of the tenants granted it; an image not here is public."""


def may_use(granted: frozenset[str], tenant: str) -> bool:
    """Whether the tenant (its label) may use an image with these grants."""
    return not granted or tenant in granted


def usable_images(images: list[ImageInfo], grants: Grants, tenant: str) -> list[ImageInfo]:
    """The images a listing shows the tenant: public ones, and private ones granted to it."""
    return [image for image in images if may_use(grants.get(image.id, frozenset()), tenant)]
