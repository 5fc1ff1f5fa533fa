"""The evaluation protocols, built from replay-rec's own filters and splitters.

Input: an interaction log with columns user_id, item_id, rating, timestamp.
`dataset.preprocess.protocol` chooses the split; both filter first:

1. keep rating > min_rating (unless the log has no ratings: `feature_schema.rating_column: null`);
   MinCountFilter on items, then on users.

`global_time` (default) is the reference project's protocol:

2. TimeSplitter at the global `global_split_ratio` time quantile -> train, raw_test;
3. ColdUserRandomSplitter(val_users_ratio, seed=42) on train -> train_events, val; with
   `min_val_users` > 0 (ours), the ratio is raised when it would draw fewer validation
   users than that (capped at a fifth of the training users), so that early stopping
   does not rest on a few dozen users;
4. leave-one-out (LastNSplitter N=1) on val -> validation_events, validation_gt;
5. test users: users of raw_test not in val. Their whole filtered history, restricted to
   items of train_events, split leave-one-out -> test_events, test_gt; test_gt keeps
   only users and items known from train_events, and only ground truths after the time
   threshold: a user whose later items are all unknown to train_events would otherwise
   be tested on a training event; such users are dropped and counted
   (`Splits.dropped_test_users`, in run.json's data summary).

`leave_one_out` is the protocol of the S3Rec/SASRec sequential benchmarks, for logs that
only order events (one-user-per-line sequence files) or to compare with those papers:

2. LastNSplitter(N=1) per user -> history, test_gt (each user's last item);
3. LastNSplitter(N=1) on history -> train_events, validation_gt (the second last item);
4. every user is validated on train_events -> validation_gt and tested on
   history -> test_gt; ground truths keep only items and users known from train_events.

The model trains on train_events, validates validation_events -> validation_gt and is
tested on test_events -> test_gt.
"""

from dataclasses import dataclass

import pandas as pd
from replay.preprocessing.filters import MinCountFilter
from replay.splitters import ColdUserRandomSplitter, LastNSplitter, TimeSplitter

from replay_accelerated.data.formats import ITEM, RATING, TIMESTAMP, USER
from replay_accelerated.errors import DataError

SPLIT_NAMES = ("train_events", "validation_events", "validation_gt", "test_events", "test_gt")
PROTOCOLS = ("global_time", "leave_one_out")  # `dataset.preprocess.protocol`, above
PROTOCOL_SEED = 42  # the reference project fixes the validation-user draw


@dataclass
class Splits:
    train_events: pd.DataFrame
    validation_events: pd.DataFrame
    validation_gt: pd.DataFrame
    test_events: pd.DataFrame
    test_gt: pd.DataFrame
    dropped_test_users: int = 0  # test users whose last known event is a training (pre-threshold) one

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in SPLIT_NAMES}


def split_interactions(log: pd.DataFrame, preprocess, rated: bool = True) -> Splits:
    """Filter `log` and split it by `preprocess.protocol`; `preprocess` is the `dataset.preprocess` config.

    rated: whether the log has ratings; one without them has rating 1.0 on every row, which the rating
    filter (`min_rating: 3`) would remove whole, so it is not filtered by rating."""
    filtered = _filter(log, preprocess, rated)
    protocol = preprocess.protocol
    if protocol == "leave_one_out":
        splits = _leave_one_out_splits(filtered)
    elif protocol == "global_time":
        splits = _global_time_splits(filtered, preprocess)
    else:
        raise DataError(f"unknown split protocol {protocol!r}; set dataset.preprocess.protocol to one of {PROTOCOLS}")
    tidy = {name: _tidy(frame) for name, frame in splits.as_dict().items()}
    return Splits(**tidy, dropped_test_users=splits.dropped_test_users)


def rating_filter(preprocess, rated: bool) -> str:
    """The rating filter in words, for the data summary and errors."""
    if not rated:
        return "none: the log has no ratings (dataset.feature_schema.rating_column is null)"
    if preprocess.min_rating is None:
        return "none (dataset.preprocess.min_rating is null)"
    return f"rating > {preprocess.min_rating}"


def _filter(log: pd.DataFrame, preprocess, rated: bool) -> pd.DataFrame:
    filtered = log
    if rated and preprocess.min_rating is not None and RATING in log.columns:
        filtered = filtered[filtered[RATING] > preprocess.min_rating]
    filtered = MinCountFilter(preprocess.min_users_per_item, groupby_column=ITEM).transform(filtered)
    filtered = MinCountFilter(preprocess.min_items_per_user, groupby_column=USER).transform(filtered)
    if filtered.empty:
        raise DataError(
            f"no interactions are left after filtering {len(log):,} rows (rating filter: "
            f"{rating_filter(preprocess, rated)}, "
            f"items with >= {preprocess.min_users_per_item} users, users with >= {preprocess.min_items_per_user} "
            "items); lower dataset.preprocess.min_rating, min_users_per_item or min_items_per_user"
        )
    return filtered


def _last_item_splitter() -> LastNSplitter:
    """Each user's latest event apart; users left with nothing before it are dropped from that part."""
    return LastNSplitter(
        N=1,
        divide_column=USER,
        strategy="interactions",
        drop_cold_users=True,
        drop_cold_items=False,
        timestamp_column=TIMESTAMP,
        query_column=USER,
        item_column=ITEM,
    )


def _global_time_splits(filtered: pd.DataFrame, preprocess) -> Splits:
    columns = dict(query_column=USER, item_column=ITEM)
    train, raw_test = TimeSplitter(
        time_threshold=preprocess.global_split_ratio,
        drop_cold_users=False,
        drop_cold_items=True,
        timestamp_column=TIMESTAMP,
        **columns,
    ).split(filtered)
    train_events, val = ColdUserRandomSplitter(
        test_size=validation_ratio(train[USER].nunique(), preprocess), drop_cold_items=True, seed=PROTOCOL_SEED,
        **columns,
    ).split(train)
    if val[USER].nunique() < 2:
        raise DataError(
            f"only {val[USER].nunique()} validation user(s) were drawn from {train[USER].nunique()} training users; "
            "raise dataset.preprocess.val_users_ratio or use a larger log"
        )

    leave_one_out = _last_item_splitter()
    validation_events, validation_gt = leave_one_out.split(val)

    test_users = pd.Index(raw_test[USER].unique()).difference(pd.Index(val[USER].unique()))
    known_items = train_events[ITEM].unique()
    test_log = filtered[filtered[USER].isin(test_users) & filtered[ITEM].isin(known_items)]
    test_events, test_gt = leave_one_out.split(test_log)
    test_gt = test_gt[test_gt[ITEM].isin(known_items) & test_gt[USER].isin(train_events[USER].unique())]
    # Every event at or after the threshold is in raw_test (TimeSplitter: timestamp >= its start).
    after_threshold = test_gt[TIMESTAMP] >= raw_test[TIMESTAMP].min()
    dropped = int((~after_threshold).sum())
    test_gt = test_gt[after_threshold]
    if test_gt.empty:
        raise DataError(
            f"the global_time split leaves no test users: none of the {len(test_users):,} users with events after the "
            f"split time (the latest {100 * preprocess.global_split_ratio:g}% of events) has training events before it "
            "(validation users are not tested); set dataset.preprocess.protocol=leave_one_out to test each user on the "
            "end of their own history, or change dataset.preprocess.global_split_ratio to move the split time"
        )
    test_events = test_events[test_events[USER].isin(test_gt[USER].unique())]
    return Splits(train_events, validation_events, validation_gt, test_events, test_gt, dropped)


def validation_ratio(n_users: int, preprocess) -> float:
    """`val_users_ratio`, raised to draw at least `min_val_users` of `n_users` (at most a fifth of them)."""
    drawn = n_users - round((1 - preprocess.val_users_ratio) * n_users)  # ColdUserRandomSplitter's count
    wanted = min(preprocess.min_val_users, n_users // 5)
    return preprocess.val_users_ratio if drawn >= wanted else wanted / n_users


def _leave_one_out_splits(filtered: pd.DataFrame) -> Splits:
    last_item = _last_item_splitter()
    history, test_gt = last_item.split(filtered)
    train_events, validation_gt = last_item.split(history)
    if train_events.empty:
        raise DataError("no user has three events or more, so leave-one-out leaves nothing to train on; "
                        "set dataset.preprocess.min_items_per_user to 3 or more on a log with longer histories")
    # A ground-truth item never seen in training cannot be scored, as in the global_time protocol.
    known_items, known_users = train_events[ITEM].unique(), train_events[USER].unique()

    def known(ground_truth: pd.DataFrame) -> pd.DataFrame:
        return ground_truth[ground_truth[ITEM].isin(known_items) & ground_truth[USER].isin(known_users)]

    return Splits(train_events, train_events, known(validation_gt), history, known(test_gt))


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Time-ordered rows per user with a fresh index, so results do not depend on the splitter's order."""
    return frame.sort_values([USER, TIMESTAMP], kind="stable").reset_index(drop=True)
