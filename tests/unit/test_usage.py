from workers.usage import usage_object, usage_tokens


def test_usage_is_read_from_the_end_of_a_large_body() -> None:
    vector = b"0.1," * 50_000 + b"0.2"
    body = (b'{"data":[{"embedding":[' + vector
            + b']}],"usage":{"prompt_tokens":7,"total_tokens":7}}')
    assert usage_object(body) == {"prompt_tokens": 7, "total_tokens": 7}
    assert usage_tokens(body) == 7


def test_prompt_plus_completion_when_no_total() -> None:
    assert usage_tokens(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}') == 7


def test_nothing_usable_is_none() -> None:
    assert usage_tokens(b'{"id": "x"}') is None
    assert usage_tokens(b'{"usage": null}') is None
    assert usage_tokens(b'{"usage": {"total_tokens": -1}}') is None
