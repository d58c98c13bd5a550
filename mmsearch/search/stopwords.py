"""Stop words: function words that say nothing about what is in a photo, so lexical matching (BM25 over
captions and file names, the text read in photos) ignores them in queries.

The English list is NLTK's ``stopwords`` corpus (179 words, function words only), without the negations
``no``, ``nor`` and ``not``: "no smoking" is about the sign. scikit-learn's longer list was not used: it
holds content words a photo can show ("fire", "computer", "system", "bottom", "front"). In Chinese the
function characters 的, 了, 是 and 在 are dropped when they stand alone as a query token (their bigrams,
"在家", still match). Words inside a quoted phrase are kept: ``"the who"`` asks for exactly that.
"""

from __future__ import annotations

ENGLISH = frozenset("""
a about above after again against ain all am an and any are aren aren't as at be because been before being
below between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down
during each few for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers
herself him himself his how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't more
most mustn mustn't my myself needn needn't now o of off on once only or other our ours ourselves out over
own re s same shan shan't she she's should should've shouldn shouldn't so some such t than that that'll the
their theirs them themselves then there these they this those through to too under until up ve very was
wasn wasn't we were weren weren't what when where which while who whom why will with won won't wouldn
wouldn't y you you'd you'll you're you've your yours yourself yourselves
""".split())
CHINESE = frozenset("的了是在")


def is_stop_word(word: str) -> bool:
    """Whether a lowercased query word (before plural folding) or a lone CJK character is a stop word."""
    return word in ENGLISH or word in CHINESE
