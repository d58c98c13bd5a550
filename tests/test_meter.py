"""The progress line of long runs (mmsearch.ingest.meter): its rate and ETA come from the slow stage, from
the first file on, and a log gets a line every few seconds, not a carriage return per batch."""

import io
import threading

from mmsearch.ingest.meter import LINE_SECONDS, METER_LINE, RATE_WINDOW, Meter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _meter(total=5022, interactive=False):
    out, clock = io.StringIO(), Clock()
    return Meter("indexing", total, stream=out, interactive=interactive, now=clock), out, clock


def test_loading_the_models_is_not_in_the_rate_and_the_eta_is_right_from_the_first_batch():
    meter, out, clock = _meter()
    clock.t += 30  # the models load: nothing is done for 30 s
    for _ in range(32):  # then the workers finish 10 files a second
        meter.read()
        clock.t += 0.1
    meter.update(32)
    meter.show()
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("indexing: 32/5,022 img · ")
    rate = meter.rate()
    assert rate is not None and abs(rate - 10.0) < 0.5, line  # not 32 files / 33 s
    assert "about 08:" in line, line  # (5022 - 32) / 10 per second = 499 s, not 50 minutes


def test_the_rate_follows_the_last_seconds_of_work():
    meter, _, clock = _meter()
    for _ in range(100):  # slow at first: 2 files a second
        meter.read()
        clock.t += 0.5
    for _ in range(int(RATE_WINDOW * 50)):  # then 50 a second for a whole window
        meter.read()
        clock.t += 0.02
    assert abs(meter.rate() - 50.0) < 3.0


def test_a_log_gets_a_line_every_few_seconds_not_one_per_batch():
    meter, out, clock = _meter(total=1000)
    for _ in range(100):  # 100 batches of 10 in 10 s
        meter.read(10)
        meter.update(10)
        clock.t += 0.1
    meter.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 10 / LINE_SECONDS + 2, lines
    assert all(METER_LINE.match(line) for line in lines)
    assert lines[-1].startswith("indexing: 1,000/1,000 img")  # the last count is written when the run ends


def test_a_terminal_gets_one_line_redrawn_and_cleared_at_the_end():
    meter, out, clock = _meter(total=100, interactive=True)
    for _ in range(10):
        meter.update(10)
        clock.t += 1
    meter.close()
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") >= 10
    assert text.endswith("\r") and text.split("\r")[-2].strip() == ""  # the summary line that follows stays alone


def test_a_short_run_writes_one_line_and_show_writes_where_a_run_holds_at_once():
    meter, out, clock = _meter(total=100)
    meter.update(10)  # too soon for a line: a run shorter than LINE_SECONDS writes one, at its end
    clock.t += 1
    meter.update(10)
    assert out.getvalue() == ""
    meter.show()  # a run about to hold says where it is, now
    meter.show()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and METER_LINE.match(lines[-1])["done"] == "20"
    meter.close()  # nothing new since
    assert len(out.getvalue().splitlines()) == 1
    short, written, _ = _meter(total=10)
    short.update(10)
    short.close()
    assert written.getvalue().startswith("indexing: 10/10 img")


def test_a_count_without_a_total_and_a_disabled_meter():
    meter, out, _ = _meter(total=None)
    meter.update(7)
    meter.close()
    assert out.getvalue() == "indexing: 7 img\n"
    assert METER_LINE.match(out.getvalue())["total"] is None
    quiet = Meter("indexing", 10, enabled=False, stream=io.StringIO())
    quiet.update(5)
    quiet.show()
    quiet.close()
    assert quiet.n == 5 and quiet.stream.getvalue() == ""


def test_reads_from_many_threads_are_all_counted():
    meter, _, _ = _meter(total=8000)
    threads = [threading.Thread(target=lambda: [meter.read() for _ in range(1000)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.reads == 8000
