"""mfa-agent: validates on-premises Azure MFA deployments against Microsoft's security guidance.

Data flows one way: inventory → connectors → facts → checks → results → reporters.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
