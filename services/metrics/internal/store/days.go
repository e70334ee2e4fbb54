package store

import (
	"context"
	"fmt"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// Days are UTC calendar days counted from 1970-01-01 (negative before). The
// aggregates are per day; instants inside a day come from the facts.

const secondsPerDay = 24 * 60 * 60

// dayOf is the UTC day of t.
func dayOf(t time.Time) int32 {
	s := t.Unix()
	d := s / secondsPerDay
	if s%secondsPerDay < 0 {
		d--
	}
	return int32(d)
}

// dayStart is the first instant of day d.
func dayStart(d int32) time.Time { return time.Unix(int64(d)*secondsPerDay, 0).UTC() }

// ceilDay is the first day starting at or after t.
func ceilDay(t time.Time) int32 {
	d := dayOf(t)
	if dayStart(d).Before(t) {
		d++
	}
	return d
}

// monthDays is the range of days [from, to) of month m.
func monthDays(m retention.Month) (from, to int32) {
	return dayOf(m.Start()), dayOf((m + 1).Start())
}

// splitDays cuts the instants [a, b) into the whole days [d0, d1) they
// contain and the partial pieces outside those days (at most two; the whole
// range when it holds no whole day).
func splitDays(a, b time.Time) (d0, d1 int32, edges []retention.Period) {
	if !a.Before(b) {
		return 0, 0, nil
	}
	d0, d1 = ceilDay(a), dayOf(b)
	if d0 >= d1 {
		return 0, 0, []retention.Period{{From: a, To: b}}
	}
	if s := dayStart(d0); a.Before(s) {
		edges = append(edges, retention.Period{From: a, To: s})
	}
	if s := dayStart(d1); s.Before(b) {
		edges = append(edges, retention.Period{From: s, To: b})
	}
	return d0, d1, edges
}

// dayDates are the days as Postgres dates (UTC midnights).
func dayDates(days []int32) []time.Time {
	out := make([]time.Time, len(days))
	for i, d := range days {
		out[i] = dayStart(d)
	}
	return out
}

// dayRow is one decoded day_buyers row: bitmaps over cseq of the customers
// with >= 1 and >= 2 orders that day, and of those whose first and second
// orders fall on it.
type dayRow struct {
	version                   int64
	ge1, ge2, firsts, seconds *roaring.Bitmap
}

func newDayRow() *dayRow {
	return &dayRow{ge1: roaring.New(), ge2: roaring.New(), firsts: roaring.New(), seconds: roaring.New()}
}

func (r *dayRow) empty() bool {
	return r.ge1.IsEmpty() && r.ge2.IsEmpty() && r.firsts.IsEmpty() && r.seconds.IsEmpty()
}

func decodeBitmap(b []byte) (*roaring.Bitmap, error) {
	bm := roaring.New()
	if len(b) == 0 {
		return bm, nil
	}
	if err := bm.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return bm, nil
}

// selectDayRows reads the rows of a tenant's days ($2, dates), one
// primary-key probe per day (the LIMIT keeps the subquery from being pulled
// up into a join over every day row of the tenant, as in selectCustomers).
const selectDayRows = `
	SELECT d.day - DATE '1970-01-01', d.version, d.ge1, d.ge2, d.firsts, d.seconds
	FROM unnest($2::date[]) AS u(day)
	CROSS JOIN LATERAL (SELECT * FROM day_buyers WHERE tenant = $1 AND day = u.day LIMIT 1) d`

// readDayRows reads the stored rows of days (those that exist).
func readDayRows(ctx context.Context, q pgx.Tx, tenant string, days []int32) (map[int32]*dayRow, error) {
	if len(days) == 0 {
		return map[int32]*dayRow{}, nil
	}
	rows, err := q.Query(ctx, selectDayRows, tenant, dayDates(days))
	if err != nil {
		return nil, fmt.Errorf("read %d day bitmaps: %w", len(days), err)
	}
	return scanDayRows(rows)
}

func scanDayRows(rows pgx.Rows) (map[int32]*dayRow, error) {
	out := map[int32]*dayRow{}
	var (
		day                       int32
		version                   int64
		ge1, ge2, firsts, seconds []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&day, &version, &ge1, &ge2, &firsts, &seconds}, func() error {
		r, err := decodeDayRow(day, version, ge1, ge2, firsts, seconds)
		out[day] = r
		return err
	}); err != nil {
		return nil, fmt.Errorf("read day bitmaps: %w", err)
	}
	return out, nil
}

// decodeDayRow decodes a day_buyers row of day.
func decodeDayRow(day int32, version int64, ge1, ge2, firsts, seconds []byte) (*dayRow, error) {
	r := &dayRow{version: version}
	for _, f := range []struct {
		dst **roaring.Bitmap
		src []byte
	}{{&r.ge1, ge1}, {&r.ge2, ge2}, {&r.firsts, firsts}, {&r.seconds, seconds}} {
		bm, err := decodeBitmap(f.src)
		if err != nil {
			return nil, fmt.Errorf("day %s: %w", dayStart(day).Format(time.DateOnly), err)
		}
		*f.dst = bm
	}
	return r, nil
}

// dayRowWrites collects rows for one upsert of day_buyers.
type dayRowWrites struct {
	days                      []time.Time
	ge1, ge2, firsts, seconds [][]byte
}

func (w *dayRowWrites) add(day int32, r *dayRow) error {
	enc := func(bm *roaring.Bitmap) ([]byte, error) {
		bm.RunOptimize()
		return bm.ToBytes()
	}
	var bs [4][]byte
	for i, bm := range []*roaring.Bitmap{r.ge1, r.ge2, r.firsts, r.seconds} {
		b, err := enc(bm)
		if err != nil {
			return fmt.Errorf("encode day %s: %w", dayStart(day).Format(time.DateOnly), err)
		}
		bs[i] = b
	}
	w.days = append(w.days, dayStart(day))
	w.ge1, w.ge2, w.firsts, w.seconds = append(w.ge1, bs[0]), append(w.ge2, bs[1]), append(w.firsts, bs[2]), append(w.seconds, bs[3])
	return nil
}
