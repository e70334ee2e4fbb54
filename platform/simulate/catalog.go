package simulate

import (
	"math"
	"sort"
	"strconv"
	"strings"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// The tables below are read-only reference data, parsed once per Shop.

// Names are "native=ascii" where the e-mail form differs from the name, the
// ASCII form being what goes into the (example.com) e-mail address.
const (
	namesEnFirst = "James|Olivia|Emma|Liam|Noah|Ava|Sophia|William|Isabella|Oliver|Charlotte|Amelia|Harry|George|Jack|Emily|Grace|Michael|Sarah|Daniel|Chloe|Ethan|Mia|Lucas"
	namesEnLast  = "Smith|Johnson|Williams|Brown|Jones|Miller|Davis|Wilson|Taylor|Anderson|Thomas|Jackson|White|Harris|Clark|Lewis|Walker|Evans|Roberts|Wright|Hughes|O'Brien=obrien|Green|Hall"
	namesDeFirst = "Lukas|Leon|Finn|Jonas|Paul|Felix|Emma|Mia|Hannah|Sophie|Lena|Marie|Jürgen=juergen|Björn=bjoern|Lea|Anna|Maximilian|Katharina|Jörg=joerg|Sabine"
	namesDeLast  = "Müller=mueller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Schulz|Hoffmann|Schäfer=schaefer|Koch|Bauer|Richter|Klein|Wolf|Schröder=schroeder|Neumann|Braun|Krüger=krueger"
	namesFrFirst = "Léa=lea|Chloé=chloe|Manon|Camille|Inès=ines|Louis|Hugo|Gabriel|Arthur|Jules|Raphaël=raphael|Éloïse=eloise|Théo=theo|Lucas|Zoé=zoe|Amélie=amelie|Mathis|Océane=oceane"
	namesFrLast  = "Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit|Durand|Leroy|Moreau|Simon|Laurent|Lefèvre=lefevre|Michel|Fournier|Girard|Bonnet|Mercier|Faure|Rousseau"
	namesEsFirst = "Lucía=lucia|Sofía=sofia|Martina|María=maria|Paula|Hugo|Martín=martin|Pablo|Alejandro|Álvaro=alvaro|Daniel|Carmen|Javier|Elena|Sergio|Andrés=andres|Irene|Raúl=raul"
	namesEsLast  = "García=garcia|Rodríguez=rodriguez|González=gonzalez|Fernández=fernandez|López=lopez|Martínez=martinez|Sánchez=sanchez|Pérez=perez|Gómez=gomez|Martín=martin|Jiménez=jimenez|Ruiz|Hernández=hernandez|Díaz=diaz|Moreno|Muñoz=munoz|Romero|Navarro"
	// Arabic script, Arabic letters (ي, ك).
	namesArFirst = "محمد=mohammed|أحمد=ahmed|فاطمة=fatima|علي=ali|عمر=omar|خالد=khaled|نورة=noura|سارة=sara|يوسف=youssef|مريم=maryam|عبدالله=abdullah|ليلى=layla|حسن=hassan|رنا=rana|سلمان=salman|هند=hind|ريم=reem|فيصل=faisal"
	namesArLast  = "العتيبي=alotaibi|القحطاني=alqahtani|الحربي=alharbi|الغامدي=alghamdi|الشمري=alshammari|الدوسري=aldosari|حداد=haddad|منصور=mansour|خوري=khoury|السيد=elsayed|الزهراني=alzahrani|المصري=almasri|العلي=alali|النجار=alnajjar"
	// Persian script, Persian letters (ی, ک, پ, ژ, گ, چ).
	namesFaFirst = "علی=ali|محمد=mohammad|زهرا=zahra|فاطمه=fatemeh|مریم=maryam|رضا=reza|حسین=hossein|سارا=sara|نیلوفر=niloufar|امیر=amir|مهدی=mehdi|پریسا=parisa|آرش=arash|شیرین=shirin|کوروش=kourosh|نگار=negar|بهرام=bahram|یاسمن=yasaman|ژاله=jaleh|گلناز=golnaz"
	namesFaLast  = "احمدی=ahmadi|محمدی=mohammadi|حسینی=hosseini|رضایی=rezaei|کریمی=karimi|موسوی=mousavi|جعفری=jafari|صادقی=sadeghi|رحیمی=rahimi|کاظمی=kazemi|تهرانی=tehrani|نوری=nouri|قاسمی=ghasemi|چگینی=chegini"
)

type name struct {
	native string
	ascii  string
}

type localeSpec struct {
	tag    string
	weight float64
	zones  []string
	first  []name
	last   []name
}

func parseNames(s string) []name {
	parts := strings.Split(s, "|")
	out := make([]name, len(parts))
	for i, p := range parts {
		native, ascii, ok := strings.Cut(p, "=")
		if !ok {
			ascii = strings.ToLower(native)
		}
		out[i] = name{native: native, ascii: ascii}
	}
	return out
}

// locales is the customer mix: the shop sells across Europe, the Americas and
// the Middle East; every locale comes with a matching IANA time zone.
func locales() []localeSpec {
	en := [2][]name{parseNames(namesEnFirst), parseNames(namesEnLast)}
	ar := [2][]name{parseNames(namesArFirst), parseNames(namesArLast)}
	fa := [2][]name{parseNames(namesFaFirst), parseNames(namesFaLast)}
	return []localeSpec{
		{"en-US", 30, []string{"America/New_York", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"}, en[0], en[1]},
		{"en-GB", 12, []string{"Europe/London"}, en[0], en[1]},
		{"de-DE", 14, []string{"Europe/Berlin"}, parseNames(namesDeFirst), parseNames(namesDeLast)},
		{"fr-FR", 10, []string{"Europe/Paris"}, parseNames(namesFrFirst), parseNames(namesFrLast)},
		{"es-ES", 8, []string{"Europe/Madrid"}, parseNames(namesEsFirst), parseNames(namesEsLast)},
		{"ar", 4, []string{"Africa/Cairo", "Asia/Dubai", "Asia/Amman"}, ar[0], ar[1]},
		{"ar-SA", 8, []string{"Asia/Riyadh"}, ar[0], ar[1]},
		{"fa", 4, []string{"Asia/Tehran", "Asia/Kabul"}, fa[0], fa[1]},
		{"fa-IR", 10, []string{"Asia/Tehran"}, fa[0], fa[1]},
	}
}

// Phone numbers come only from ranges reserved for fiction, so no generated
// number can reach a real subscriber: Ofcom's drama range +44 7700 900000-900999
// for British customers, NANP 555-0100 to 555-0199 (reserved in every area code)
// for everyone else, since most countries publish no such range.
var nanpAreaCodes = [...]string{"201", "212", "305", "312", "415", "512", "617", "646", "702", "718", "773", "917"}

type product struct {
	sku   string
	name  string
	price int64 // minor units, after scaling to the configured currency and median
}

// catalogSpec is "sku|name|price in EUR cents" at a 45 EUR median order value.
const catalogSpec = `AP-101|Organic Cotton T-Shirt|2490
AP-102|Merino Wool Socks|1490
AP-103|Linen Shirt|5990
AP-104|Wool Beanie|2990
AP-105|Rain Jacket|12900
AP-106|Chino Trousers|6990
AP-107|Cashmere Scarf|8900
AP-108|Canvas Sneakers|7490
HM-201|Ceramic Mug|1290
HM-202|Scented Candle|1890
HM-203|Linen Tea Towels (Set of 2)|1690
HM-204|Olive Wood Cutting Board|3490
HM-205|Cast Iron Skillet|4990
HM-206|Wool Throw Blanket|8990
HM-207|Glass Carafe|2290
HM-208|Desk Lamp|6490
HM-209|Down Pillow|5490
HM-210|Espresso Machine|18900
BT-301|Lip Balm|490
BT-302|Hand Cream|990
BT-303|Shampoo Bar|1190
BT-304|Face Serum|3290
BT-305|Body Lotion|1590
BT-306|Eau de Parfum|7900
BT-307|Bamboo Toothbrush (4 Pack)|890
PT-401|Single-Origin Coffee Beans|1390
PT-402|Loose Leaf Green Tea|990
PT-403|Dark Chocolate Bar|490
PT-404|Extra Virgin Olive Oil|1790
PT-405|Wildflower Honey|1190
PT-406|Granola|790
PT-407|Gift Box|4490
AC-501|Leather Wallet|4990
AC-502|Canvas Tote Bag|1990
AC-503|Sunglasses|8900
AC-504|Water Bottle|2490
AC-505|Backpack|9900
AC-506|Watch|14900`

const catalogReferenceMedian = 45.0

// catalog returns the products sorted by price, priced in minor units of the
// currency so that a typical basket matches the configured median.
func catalog(median float64, digits int) []product {
	scale := median / catalogReferenceMedian * math.Pow10(digits) / 100
	lines := strings.Split(catalogSpec, "\n")
	out := make([]product, 0, len(lines))
	for _, l := range lines {
		f := strings.Split(l, "|")
		cents, _ := strconv.ParseFloat(f[2], 64) // a constant table: always parses
		p := int64(math.Round(cents * scale))
		if p < 1 {
			p = 1
		}
		out = append(out, product{sku: f[0], name: f[1], price: p})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].price < out[j].price })
	return out
}

type coupon struct {
	code    string
	percent int64
}

var coupons = [...]coupon{{"WELCOME10", 10}, {"SAVE15", 15}, {"SPRING10", 10}, {"VIP20", 20}, {"COMEBACK15", 15}}

// Ticket categories in the order of categoryWeights.
var ticketCategories = [...]eventsv1.TicketCategory{
	eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING,
	eventsv1.TicketCategory_TICKET_CATEGORY_PRODUCT,
	eventsv1.TicketCategory_TICKET_CATEGORY_DELIVERY,
	eventsv1.TicketCategory_TICKET_CATEGORY_ACCOUNT,
	eventsv1.TicketCategory_TICKET_CATEGORY_OTHER,
}

var (
	// Everyday tickets are about deliveries and products; customers about to
	// leave complain about prices.
	categoryWeights        = cumulate(10, 30, 35, 12, 13)
	leavingCategoryWeights = cumulate(50, 18, 18, 4, 10)
)

var ticketSubjects = [...][]string{
	{"Price went up since my last order", "Found it cheaper elsewhere", "Charged twice for one order", "Coupon code not applied", "Shipping costs are too high", "Charged more than the cart total"},
	{"Item arrived damaged", "Size runs small", "Product not as described", "Missing part in the box", "How do I use this?"},
	{"Where is my order?", "Parcel marked delivered but not received", "Delivery is late", "Wrong address on my order", "Courier left the parcel outside"},
	{"Cannot log in", "Change my e-mail address", "Delete my account", "Password reset e-mail not arriving", "Update my phone number"},
	{"Question about gift wrapping", "Do you ship abroad?", "Feedback on the website", "Invoice copy needed"},
}

var ticketResolutions = [...][]string{
	{"Explained the pricing", "Refunded the price difference", "Applied the coupon manually", "Reversed the duplicate charge"},
	{"Replacement sent", "Refund issued", "Shared usage instructions"},
	{"Tracking information shared", "Reshipped the order", "Address corrected"},
	{"Account updated", "Password reset", "Account deleted"},
	{"Answered the question"},
}

var refundReasons = [...]string{"Item damaged", "Not as described", "Late delivery", "Changed mind", "Wrong size", "Price adjustment"}

// NPS comments by class: detractor, passive, promoter.
var npsComments = [...][]string{
	{"Too expensive for what you get", "Prices keep going up", "Delivery took far too long", "Support never answered"},
	{"Good products but a bit pricey", "Delivery could be faster", "Fine overall"},
	{"Great quality and fast delivery", "Love the products, will order again", "Excellent customer service"},
}

// CSAT comments: unhappy (1-3), happy (4-5).
var csatComments = [...][]string{
	{"Took too long to get an answer", "Issue not really solved", "Still unhappy with the price"},
	{"Quick and helpful", "Problem solved, thanks"},
}

var (
	// NPS classes (detractor 0-6, passive 7-8, promoter 9-10): customers about
	// to leave skew detractor, the others promoter.
	npsClassWeights        = cumulate(15, 30, 55)
	leavingNPSClassWeights = cumulate(55, 35, 10)
	// CSAT scores 1..5.
	csatWeights        = cumulate(4, 6, 15, 35, 40)
	leavingCSATWeights = cumulate(30, 30, 25, 10, 5)
	// Items per order 1..5.
	basketSizeWeights = cumulate(45, 30, 15, 7, 3)
)
