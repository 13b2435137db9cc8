"""Generation for decoder-only language models: prompt, then one cached step per token."""

from keras import ops

from keras_transformer.decoding.greedy import best_token, sampler
from keras_transformer.layers.masks import mask_value
from keras_transformer.vocabulary import END_ID, PAD_ID, START_ID


def _continue(model, prompt_ids, max_length, choose, start_id=START_ID, end_id=END_ID):
    """The loop shared by greedy and sampled generation; `choose(logits (B, V))` picks tokens.

    Rows are `[start] + prompt + generated`. The whole (padded) prompt is run
    through the cache in one call; the loop then starts at the end of the
    shortest prompt: where a row still has prompt tokens, they are kept and
    only refresh the cache (a row's padding positions were cached from
    padding, and are rewritten before any later position attends to them).
    Padding and the start token are never generated: a 0 inside the text
    would read as its end, and the full pass masks it.
    """
    batch_size = ops.shape(prompt_ids)[0]
    prompt_length = prompt_ids.shape[1]
    prompt_ids = ops.cast(prompt_ids, "int32")
    start = ops.full((batch_size, 1), start_id, "int32")
    rest = ops.zeros((batch_size, max_length - prompt_length), "int32")
    tokens = ops.concatenate([start, prompt_ids, rest], axis=1)  # (B, 1 + max_length)
    is_prompt = ops.concatenate(
        [ops.ones((batch_size, 1), "bool"), ops.not_equal(prompt_ids, PAD_ID), ops.zeros_like(rest, "bool")], axis=1
    )
    cache = model.initialize_cache(batch_size, max_length)
    prefill = min(1 + prompt_length, max_length)
    _, cache = model.call_with_cache(tokens[:, :prefill], cache, 0)
    # The last prompt position of the shortest row: the first step that may generate.
    first = ops.min(ops.sum(ops.cast(is_prompt, "int32"), axis=1)) - 1
    finished = ops.zeros((batch_size,), "bool")
    vocabulary = ops.arange(model.vocabulary_size)
    banned = ops.logical_or(ops.equal(vocabulary, PAD_ID), ops.equal(vocabulary, start_id))[None, :]  # (1, V)

    def cond(index, tokens, cache, finished):
        return ops.logical_and(index < max_length, ops.logical_not(ops.all(finished)))

    def body(index, tokens, cache, finished):
        token = ops.slice(tokens, (0, index), (batch_size, 1))  # (B, 1)
        logits, cache = model.call_with_cache(token, cache, index)
        logits = ops.where(banned, mask_value("float32"), ops.cast(logits[:, 0, :], "float32"))
        chosen = ops.cast(choose(logits), "int32")  # (B,)
        given = ops.slice(tokens, (0, index + 1), (batch_size, 1))[:, 0]
        in_prompt = ops.slice(is_prompt, (0, index + 1), (batch_size, 1))[:, 0]
        next_token = ops.where(in_prompt, given, ops.where(finished, PAD_ID, chosen))
        tokens = ops.slice_update(tokens, (0, index + 1), next_token[:, None])
        ended = ops.logical_and(ops.logical_not(in_prompt), ops.equal(next_token, end_id))
        return index + 1, tokens, cache, ops.logical_or(finished, ended)

    loop_vars = (ops.cast(first, "int32"), tokens, cache, finished)
    _, tokens, _, _ = ops.while_loop(cond, body, loop_vars, maximum_iterations=max_length)
    return tokens[:, 1:]


def lm_greedy_search(model, prompt_ids, max_length, start_id=START_ID, end_id=END_ID):
    """Continue each prompt with its most likely token, step by step, over the cache.

    Args:
        model: a `keras_transformer.TransformerLM`.
        prompt_ids: `(B, P)` int prompt ids without the start token,
            0-padded on the right (`P` may be 0: generate from the start
            token alone), `P <= max_length`.
        max_length: the most tokens per row, prompt and end token included.
        start_id, end_id: reserved ids.

    Returns:
        `(B, max_length)` int32 ids: the prompt, the generated tokens up to
        and including the end token, then padding (0).
    """
    return _continue(model, prompt_ids, max_length, best_token, start_id, end_id)


def lm_sample(
    model,
    prompt_ids,
    max_length,
    seed_generator,
    temperature=1.0,
    top_k=None,
    top_p=None,
    start_id=START_ID,
    end_id=END_ID,
):
    """Continue each prompt by sampling from the filtered softmax (see `filter_logits`).

    Args and returns as in `lm_greedy_search`; `seed_generator`,
    `temperature`, `top_k` and `top_p` as in `keras_transformer.decoding.sample`.
    """

    choose = sampler(seed_generator, temperature, top_k, top_p)
    return _continue(model, prompt_ids, max_length, choose, start_id, end_id)
