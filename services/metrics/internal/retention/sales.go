package retention

// Sales are the counts and sums behind revenue, average order value and
// orders per customer for a period.
type Sales struct {
	// Orders placed in the period, refunded or not.
	Orders int64
	// Customers with at least one order in the period.
	Customers int64
	// GrossMinor is the sum of the orders' totals.
	GrossMinor int64
	// RefundedMinor is what refunds took off those orders (capped at each
	// order's total), so that GrossMinor - RefundedMinor == NetMinor.
	RefundedMinor int64
	// NetMinor is revenue: totals minus refunds.
	NetMinor int64
}

// AOV is the average order value, revenue / orders, rounded to whole minor
// units; ok is false when there were no orders.
func (s Sales) AOV() (minor int64, ok bool) { return AverageMinor(s.NetMinor, s.Orders) }

// OrdersPerCustomer is orders / customers (a plain ratio, not a percentage).
func (s Sales) OrdersPerCustomer() Ratio { return Ratio{Num: s.Orders, Den: s.Customers} }

// SumSales computes the sales of the orders placed in p. Refunds count
// against the order they refund, whenever they were issued.
func SumSales(orders []NetOrder, p Period) Sales {
	var s Sales
	customers := make(map[CustomerID]struct{})
	for _, o := range orders {
		if !p.Contains(o.At) {
			continue
		}
		net := o.NetMinor()
		s.Orders++
		s.GrossMinor += o.TotalMinor
		s.NetMinor += net
		s.RefundedMinor += o.TotalMinor - net
		customers[o.Customer] = struct{}{}
	}
	s.Customers = int64(len(customers))
	return s
}
