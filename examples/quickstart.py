"""The quickstart service as a plain module (the same class as examples/01-quickstart.ipynb).

Serve it without a notebook:

    nbserve serve examples/quickstart.py:Sentiment --port 3000
    curl -s -X POST http://127.0.0.1:3000/classify \
         -H 'Content-Type: application/json' -d '{"text": "I love this"}'
"""

from __future__ import annotations

import re

import nbserve

POSITIVE = {"good", "great", "love", "excellent", "happy", "nice"}
NEGATIVE = {"bad", "awful", "hate", "terrible", "sad", "poor"}


@nbserve.service
class Sentiment:
    """Labels text positive, negative or neutral by counting opinion words."""

    @nbserve.api
    def classify(self, text: str) -> dict[str, str | int]:
        words = re.findall(r"[a-z']+", text.lower())
        score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
        label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
        return {"label": label, "score": score}
