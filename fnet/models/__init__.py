"""Ready-made networks from the books; this face re-exports them (``book_names`` lives in
``fnet._trees``).

- ``book``: ``two_layer_net``, ``multi_layer_net``, ``simple_convnet`` (the first book)
- ``resnet``: ``resnet``
- ``recurrent``: ``sequence_classifier``, ``rnnlm``
- ``transformer``: ``transformer_block``, ``gpt``
- ``encoder_decoder``: ``seq2seq``, ``attention_seq2seq`` (the second book's chapters 7-8), and
  ``encoder_decoder.generate``, their greedy decoding
"""

from fnet._trees import book_names
from fnet.models.book import multi_layer_net, simple_convnet, two_layer_net
from fnet.models.encoder_decoder import attention_seq2seq, seq2seq
from fnet.models.recurrent import rnnlm, sequence_classifier
from fnet.models.resnet import resnet
from fnet.models.transformer import gpt, transformer_block

__all__ = ["attention_seq2seq", "book_names", "gpt", "multi_layer_net", "resnet", "rnnlm", "seq2seq",
           "sequence_classifier", "simple_convnet", "transformer_block", "two_layer_net"]
